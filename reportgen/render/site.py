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


def _rendered(reports: tuple[ModelReport, ...], jobs: int) -> list[list[tuple[str, str]]]:
    """Every model's files, rendered in up to jobs processes (charts dominate the time)."""
    if jobs <= 1 or len(reports) <= 1:
        return [model_files(report) for report in reports]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Fork: rendering imports no torch, and the reports travel back as plain strings.
    with ProcessPoolExecutor(min(jobs, len(reports)), mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(model_files, reports))


def write_site(result: RunResult, out: Path, jobs: int = 1) -> list[Path]:
    """Write every report and the index under out; returns the files written."""
    written = [
        write_file(out, relative, content)
        for files in _rendered(result.reports, jobs)
        for relative, content in files
    ]
    charts = index_charts(result)
    for chart in charts:
        written.append(write_file(out, chart.filename, chart.svg))
    written.append(write_file(out, "index.json", index_json(result)))
    written.append(write_file(out, "index.md", index_markdown(result, charts)))
    written.append(write_file(out, "summary.md", summary_markdown(result)))
    written.append(write_file(out, "index.html", index_html(result, charts)))
    return written
