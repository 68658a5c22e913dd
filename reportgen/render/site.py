"""The whole site: per-model folders and the index, every format from the same RunResult."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ..data import ModelReport, RunResult
from ..folder import Owned, journal, put_folder
from ..output import write_file
from .charts import index_charts, report_charts
from .diagram import lora_diagram
from .html import index_html, report_html
from .jsonreport import index_json, report_json
from .markdown import index_markdown, report_markdown, summary_markdown


def model_files(report: ModelReport) -> list[tuple[str, str]]:
    """One model's files, as (path relative to the site, content): JSON, charts, diagram, Markdown, HTML."""
    folder = report.slug
    charts = report_charts(report)
    files = [(f"{folder}/report.json", report_json(report))]
    files += [(f"{folder}/{chart.filename}", chart.svg) for chart in charts]
    files.append((f"{folder}/lora_diagram.svg", lora_diagram(report.largest_module)))
    files.append((f"{folder}/report.md", report_markdown(report, charts)))
    files.append((f"{folder}/report.html", report_html(report, charts)))
    return files


def write_model(report: ModelReport, out: Path, owned: Owned | None = None) -> list[str]:
    """Write one model's folder under out, whole (staged, then swapped in); returns its files, relative to out.

    ``owned``: the files reportgen wrote in out before, per folder (see
    ``folder.read_manifest``); the model folder's other files are the user's and are kept.
    """
    return write_model_files(out, report.slug, model_files(report), owned)


def write_model_files(out: Path, slug: str, files: Sequence[tuple[str, str]], owned: Owned | None = None) -> list[str]:
    """Put a model's files (paths relative to the site, as ``model_files`` gives them) in its folder, whole.

    The result cache serves a model's stored files through here, as ``write_model`` writes fresh ones.
    """
    prefix = f"{slug}/"
    inner = [(relative.removeprefix(prefix), content) for relative, content in files]
    return put_folder(out, slug, inner, None if owned is None else owned.get(slug, frozenset()))


def write_index(result: RunResult, out: Path, files: Sequence[str] = (), highlight: tuple[str, ...] = ()) -> list[str]:
    """Write the index pages, the cross-model charts and summary.md under out; returns their names.

    index.json's manifest lists files and these. highlight: model ids the cross-model charts mark and label.
    """
    notes: list[str] = []  # a chart that cannot be drawn: a line in the index, the rest still written
    charts = index_charts(result, highlight, notes)
    result = dataclasses.replace(result, notes=result.notes + tuple(notes)) if notes else result
    pages = [chart.filename for chart in charts] + ["index.json", "index.md", "summary.md", "index.html"]
    journal(out, "", pages)
    for chart in charts:
        write_file(out, chart.filename, chart.svg)
    write_file(out, "index.json", index_json(result, sorted(set(files) | set(pages))))
    write_file(out, "index.md", index_markdown(result, charts))
    write_file(out, "summary.md", summary_markdown(result))
    write_file(out, "index.html", index_html(result, charts))
    return pages


def write_site(result: RunResult, out: Path) -> list[Path]:
    """Write every report and then the index under out; returns the files written.

    (``reportgen report`` writes each model's folder as soon as that model is
    analysed, with ``write_model``, and the index once all are done, under the
    output folder's lock: see ``reportgen.folder``.)
    """
    written = [relative for report in result.reports for relative in write_model(report, out)]
    return [out / relative for relative in written + write_index(result, out, written)]
