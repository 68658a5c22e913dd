"""The whole site: per-model folders and the index, every format from the same RunResult."""

from __future__ import annotations

from pathlib import Path

from ..data import RunResult
from ..output import write_file
from .jsonreport import index_json, report_json


def write_site(result: RunResult, out: Path) -> list[Path]:
    """Write every report and the index under out; returns the files written."""
    written: list[Path] = []
    for report in result.reports:
        written.append(write_file(out, f"{report.slug}/report.json", report_json(report)))
    written.append(write_file(out, "index.json", index_json(result)))
    return written
