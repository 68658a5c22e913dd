"""The whole site: per-model folders and the index, every format from the same RunResult."""

from __future__ import annotations

from pathlib import Path

from ..data import RunResult
from ..output import write_file
from .charts import index_charts, report_charts
from .diagram import lora_diagram
from .html import index_html, report_html
from .jsonreport import index_json, report_json
from .markdown import index_markdown, report_markdown, summary_markdown


def write_site(result: RunResult, out: Path) -> list[Path]:
    """Write every report and the index under out; returns the files written."""
    written: list[Path] = []
    for report in result.reports:
        folder = report.slug
        charts = report_charts(report)
        written.append(write_file(out, f"{folder}/report.json", report_json(report)))
        for chart in charts:
            written.append(write_file(out, f"{folder}/{chart.filename}", chart.svg))
        written.append(write_file(out, f"{folder}/lora_diagram.svg", lora_diagram(report.largest_module)))
        written.append(write_file(out, f"{folder}/report.md", report_markdown(report, charts)))
        written.append(write_file(out, f"{folder}/report.html", report_html(report, charts)))
    charts = index_charts(result)
    for chart in charts:
        written.append(write_file(out, chart.filename, chart.svg))
    written.append(write_file(out, "index.json", index_json(result)))
    written.append(write_file(out, "index.md", index_markdown(result, charts)))
    written.append(write_file(out, "summary.md", summary_markdown(result)))
    written.append(write_file(out, "index.html", index_html(result, charts)))
    return written
