"""The whole site: per-model folders and the index, every format from the same RunResult."""

from __future__ import annotations

from pathlib import Path

from ..data import ModelReport, RunResult
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


def write_model(report: ModelReport, out: Path) -> list[Path]:
    """Write one model's folder under out; returns the files written."""
    return [write_file(out, relative, content) for relative, content in model_files(report)]


def write_index(result: RunResult, out: Path, highlight: tuple[str, ...] = ()) -> list[Path]:
    """Write the index pages, the cross-model charts and summary.md under out; returns the files written.

    highlight: model ids the cross-model charts mark and label.
    """
    charts = index_charts(result, highlight)
    written = [write_file(out, chart.filename, chart.svg) for chart in charts]
    written.append(write_file(out, "index.json", index_json(result)))
    written.append(write_file(out, "index.md", index_markdown(result, charts)))
    written.append(write_file(out, "summary.md", summary_markdown(result)))
    written.append(write_file(out, "index.html", index_html(result, charts)))
    return written


def write_site(result: RunResult, out: Path) -> list[Path]:
    """Write every report and then the index under out; returns the files written.

    (``reportgen report`` writes each model's folder as soon as that model is
    analysed, with ``write_model``, and the index once all are done.)
    """
    written = [path for report in result.reports for path in write_model(report, out)]
    return written + write_index(result, out)
