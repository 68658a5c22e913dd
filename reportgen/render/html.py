"""Self-contained HTML pages: report.html per model and index.html, CSS and charts inline."""

from __future__ import annotations

from markupsafe import Markup

from ..data import ModelReport, RunResult
from .charts import inline_svg
from .diagram import lora_diagram
from .index_table import index_table
from .jinja import environment
from .view import ChartRef, index_view, report_view


def _inline(charts: tuple[ChartRef, ...]) -> tuple[ChartRef, ...]:
    return tuple(ChartRef(chart.filename, chart.alt, inline_svg(chart.svg)) for chart in charts)


def report_html(report: ModelReport, charts: tuple[ChartRef, ...] = ()) -> str:
    """One model's report.html: one file that opens anywhere, offline."""
    template = environment(html=True).get_template("report.html.j2")
    # Markup: the diagram is SVG that reportgen.render.diagram builds, escaping the one text it takes in.
    diagram = Markup(inline_svg(lora_diagram(report.largest_module)))
    return template.render(v=report_view(report, _inline(charts)), diagram=diagram)


def index_html(result: RunResult, charts: tuple[ChartRef, ...] = ()) -> str:
    """index.html: every model linked by relative path, with its key numbers and status, and every failure."""
    template = environment(html=True).get_template("index.html.j2")
    view = index_view(result, _inline(charts))
    return template.render(v=view, t=index_table(view))
