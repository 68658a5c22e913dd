"""The cross-model charts: one point per model and rank, legible at hundreds of models.

Every point carries its model and numbers as a native SVG tooltip (``<title>``,
on an invisible hit area over the marker); only a few points are labelled: the
largest model, the outliers from the size trend, and the models the user names
with ``--highlight``. Labels are placed with the renderer's own text extents
and never overlap: a label with no free place is left out (its point keeps its
tooltip, and the Markdown page's table beside the image names it). No torch here.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from xml.sax.saxutils import escape

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox

from ..data import Cell, ModelReport, RunResult
from ..errors import one_line
from ..formatting import human_count, pct
from .charts import FIT_PAD_POINTS, MARKERS, OKABE_ITO, RC, ChartData, Series, _figure, _labels, _log_axis, _svg
from .index_table import is_local_id, short_names
from .view import ChartRef, headline_scenario

OUTLIERS = 4  # at most this many points labelled for straying from the trend
OUTLIER_SIGMAS = 2.0  # a point this many standard deviations off the log-log trend is an outlier
# Where a label may sit beside its point, in points: right-above, right-below, left-above, left-below, above, below.
OFFSETS = ((6, 4, "left"), (6, -12, "left"), (-6, 4, "right"), (-6, -12, "right"), (0, 9, "center"),
           (0, -17, "center"))
HIT_RADIUS = 5.0  # the invisible hit area of a point's tooltip, in points


@dataclass(frozen=True)
class PointChart:
    """A cross-model chart's data: the ChartData it draws, each model's tooltip, and which models it labels."""

    chart: ChartData
    ids: tuple[str, ...]  # per point (category), the model's full id
    tooltips: tuple[str, ...]  # per point: the model and its numbers
    labelled: tuple[str, ...]  # ids to label, in order of priority (highlighted, largest, outliers)
    highlighted: tuple[str, ...]


def chart_names(reports: tuple[ModelReport, ...]) -> dict[str, str]:
    """A short name per model for a label: a hub id's name (whole where two owners share it), a path's folders."""
    local = [report.model.id for report in reports if is_local_id(report.model.id, report.model.source)]
    short = short_names(sorted(set(local)))
    names = {}
    for report in reports:
        model_id = report.model.id
        if model_id in short:
            names[model_id] = short[model_id].removeprefix("…/").removesuffix("/config.json")
        else:
            names[model_id] = model_id.rsplit("/", 1)[-1]
    shared = Counter(names.values())
    return {model_id: model_id if shared[name] > 1 and model_id not in short else name  # org1/x and org2/x
            for model_id, name in names.items()}


def _headline(report: ModelReport, rank: int) -> Cell | None:
    if rank not in report.ranks:
        return None
    cell = report.cell(headline_scenario(report), rank, report.primary_method)
    return cell if cell.applicable else None


def _tooltip(report: ModelReport, ranks: tuple[int, ...]) -> str:
    """One model's tooltip: its id, size, and the headline scenario's trainables and share at each rank."""
    lines = [report.model.id, f"{human_count(report.model.total_params)} parameters ({report.model.model_type})"]
    for rank in ranks:
        cell = _headline(report, rank)
        if cell is not None and cell.formula_trainable is not None:
            lines.append(f"r={rank}: {human_count(cell.formula_trainable)} trainable, "
                         f"{pct(cell.percent_of_model)} of the model ({cell.scenario})")
    return "\n".join(lines)


def select_labels(xs: tuple[float, ...], ys: tuple[float, ...], ids: tuple[str, ...],
                  highlight: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The ids to label: the highlighted, the largest (by x), then the farthest off the log-log trend."""
    points = [(x, y, name) for x, y, name in zip(xs, ys, ids) if x > 0 and y > 0]
    chosen = [name for name in highlight if name in ids]
    if points:
        chosen.append(max(points, key=lambda point: (point[0], point[1], point[2]))[2])
    at = {name: (x, y) for x, y, name in points}
    if len(points) >= 3:
        lx = [math.log10(x) for x, _, _ in points]
        ly = [math.log10(y) for _, y, _ in points]
        slope, intercept = _fit(lx, ly)
        residuals = [y - (slope * x + intercept) for x, y in zip(lx, ly)]
        spread = statistics.pstdev(residuals)
        far = sorted(((abs(r), name) for r, (_, _, name) in zip(residuals, points)
                      if spread > 0 and abs(r) > OUTLIER_SIGMAS * spread), reverse=True)
        spots = {at[name] for name in chosen if name in at}
        outliers = []
        for _, name in far:  # one label per spot: models with the same numbers share a point
            if at[name] not in spots:
                spots.add(at[name])
                outliers.append(name)
        chosen += outliers[:OUTLIERS]
    return tuple(dict.fromkeys(chosen))


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = slope * x + intercept (slope 0 when every x is the same)."""
    try:
        slope, intercept = statistics.linear_regression(xs, ys)
    except statistics.StatisticsError:
        return 0.0, statistics.fmean(ys)
    return slope, intercept


def _point_chart(result: RunResult, highlight: tuple[str, ...], filename: str, title: str, ylabel: str,
                 alt: str, value: str) -> PointChart:
    reports = tuple(sorted(result.reports, key=lambda report: (report.model.total_params, report.model.id)))
    names = chart_names(reports)
    series = []
    for index, rank in enumerate(result.ranks):
        values = []
        for report in reports:
            cell = _headline(report, rank)
            number = getattr(cell, value) if cell is not None else None
            values.append(float(number or 0.0))
        series.append(Series(f"r={rank}", tuple(values), OKABE_ITO[index % len(OKABE_ITO)]))
    xs = tuple(float(report.model.total_params) for report in reports)
    ids = tuple(report.model.id for report in reports)
    chart = ChartData(filename=filename, title=title, xlabel="model parameters (log scale)", ylabel=ylabel,
                      categories=tuple(names[model_id] for model_id in ids), series=tuple(series), x_values=xs,
                      alt=alt)
    last = series[-1].values if series else ()
    return PointChart(chart, ids, tuple(_tooltip(report, result.ranks) for report in reports),
                      select_labels(xs, last, ids, highlight), tuple(name for name in highlight if name in ids))


def cross_model_chart(result: RunResult, highlight: tuple[str, ...] = ()) -> PointChart:
    """Model size against the headline scenario's LoRA trainables, one series per rank (log-log)."""
    return _point_chart(
        result, highlight, "cross_model.svg", "Model size against LoRA trainables (all linear layers)",
        "LoRA trainable parameters (log scale)",
        "Points: each model's size against its LoRA trainables on all linear layers, one colour per rank; "
        "the largest model, the outliers and any highlighted model are labelled.", "formula_trainable")


def percent_chart(result: RunResult, highlight: tuple[str, ...] = ()) -> PointChart:
    """Model size against the share of the model trained (percent), one series per rank (log-log)."""
    return _point_chart(
        result, highlight, "cross_model_percent.svg", "Share of the model trained against model size",
        "trainable, % of the model (log scale)",
        "Points: each model's size against the percent of it that LoRA on all linear layers trains, one colour "
        "per rank; the largest model, the outliers and any highlighted model are labelled.", "percent_of_model")


@dataclass(frozen=True)
class Layout:
    """A drawn scatter before it is written: the figure, its axes, and each placed label's id and box."""

    figure: Figure
    axes: Axes
    labels: tuple[tuple[str, Bbox], ...]


def layout(points: PointChart) -> Layout:
    """The scatter drawn and laid out, its labels placed where none overlaps another or leaves the axes."""
    chart = points.chart
    with _figure(7.6, 4.8) as (figure, axes):
        for index, series in enumerate(chart.series):
            shown = [(x, y) for x, y in zip(chart.x_values, series.values) if y > 0]
            axes.plot([x for x, _ in shown], [y for _, y in shown], color=series.colour, alpha=0.85,
                      marker=MARKERS[index % len(MARKERS)], markersize=4.5, linestyle="none", label=series.name)
        marked = [(x, series.values[i]) for i, x in enumerate(chart.x_values)
                  if points.ids[i] in points.highlighted for series in chart.series[-1:] if series.values[i] > 0]
        if marked:
            axes.plot([x for x, _ in marked], [y for _, y in marked], linestyle="none", marker="o", markersize=11,
                      markerfacecolor="none", markeredgecolor="#000000", markeredgewidth=1.4, label="highlighted")
        axes.set_xscale("log")
        axes.set_yscale("log")
        _log_axis(axes.xaxis)
        _log_axis(axes.yaxis)
        if chart.filename == "cross_model_percent.svg":
            axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)  # beside the points, never on them
        _labels(axes, chart)
        figure.tight_layout(pad=FIT_PAD_POINTS / RC["font.size"])
        return Layout(figure, axes, tuple(_place_labels(figure, axes, points)))


def _place_labels(figure: Figure, axes: Axes, points: PointChart) -> list[tuple[str, Bbox]]:
    chart = points.chart
    last = chart.series[-1].values if chart.series else ()
    renderer = FigureCanvasAgg(figure).get_renderer()  # type: ignore[no-untyped-call]  # Agg measures the text
    frame = axes.get_window_extent(renderer)
    taken: list[Bbox] = []
    placed: list[tuple[str, Bbox]] = []
    for model_id in points.labelled:
        index = points.ids.index(model_id)
        if not last or last[index] <= 0:
            continue
        xy = (chart.x_values[index], last[index])
        for dx, dy, align in OFFSETS:
            text = axes.annotate(chart.categories[index], xy, xytext=(dx, dy), textcoords="offset points",
                                 ha=align, fontsize=7.5, color="#222222",
                                 fontweight="bold" if model_id in points.highlighted else "normal")
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in taken):
                taken.append(box)
                placed.append((model_id, box))
                break
            text.remove()
    return placed


def _hit_areas(figure: Figure, axes: Axes, points: PointChart) -> str:
    """The tooltips: an invisible circle with a <title> over every plotted point, in the SVG's units (points)."""
    chart = points.chart
    scale = 72.0 / figure.dpi  # the SVG's user unit is the point; display coordinates are pixels at figure.dpi
    height = figure.bbox.height
    circles = []
    for series in chart.series:
        for index, (x, y) in enumerate(zip(chart.x_values, series.values)):
            if y <= 0:
                continue
            px, py = axes.transData.transform((x, y))
            title = escape(f"{points.tooltips[index]}\n(this point: {series.name})")
            circles.append(f'<circle class="point-hit" cx="{px * scale:.2f}" cy="{(height - py) * scale:.2f}" '
                           f'r="{HIT_RADIUS}" fill="#000000" fill-opacity="0"><title>{title}</title></circle>')
    return '<g class="point-tooltips">\n' + "\n".join(circles) + "\n</g>\n"


def draw_points(points: PointChart) -> ChartRef:
    """The scatter as SVG text, every point with its tooltip, naming the models its labels show."""
    drawn = layout(points)
    svg = _svg(drawn.figure, relayout=False)
    end = svg.rindex("</svg>")
    svg = svg[:end] + _hit_areas(drawn.figure, drawn.axes, points) + svg[end:]
    return ChartRef(filename=points.chart.filename, alt=points.chart.alt, svg=svg, title=points.chart.title,
                    labelled=tuple(model_id for model_id, _ in drawn.labels))


def index_charts(result: RunResult, highlight: tuple[str, ...] = (),
                 notes: list[str] | None = None) -> tuple[ChartRef, ...]:
    """The index's cross-model charts: none when no model has a point to show (no model succeeded, or every
    all-linear cell is not applicable, as on Mamba models, where PEFT refuses out_proj)."""
    if not result.reports:
        return ()
    charts = (cross_model_chart(result, highlight), percent_chart(result, highlight))
    return tuple(drawn for points in charts
                 if any(value > 0 for series in points.chart.series for value in series.values)
                 and (drawn := _drawn_or_said(points, notes)) is not None)


def _drawn_or_said(points: PointChart, notes: list[str] | None) -> ChartRef | None:
    """The chart drawn; one that cannot be drawn is a line in ``notes`` (the index's), never the run's end."""
    try:
        return draw_points(points)
    except (ValueError, RuntimeError, OverflowError) as exc:
        if notes is None:
            raise
        notes.append(f"the chart {points.chart.filename} could not be drawn: {type(exc).__name__}: {one_line(str(exc))}")
        return None
