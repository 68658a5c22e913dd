"""Charts: what each chart plots (tested as data), and the matplotlib drawing of it as deterministic SVG.

Drawing uses matplotlib's object API (``Figure``, no pyplot) on the Agg backend:
no display, no global figure registry. The SVG output is byte-stable: a fixed
hash salt for its ids, no date metadata, text kept as text.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from ..data import ModelReport, RunResult  # noqa: E402
from ..formatting import GB, GIB, axis_count, human_count  # noqa: E402
from .memory_view import memory_setting, method_title  # noqa: E402
from .view import ChartRef, module_lora_rows, scenario_rows  # noqa: E402

# Okabe & Ito's colour-blind-safe palette.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GROUP_COLOURS = {"attention": "#0072B2", "mlp": "#E69F00", "other": "#999999"}
GROUP_HATCHES = {"attention": "", "mlp": "//", "other": ".."}
GROUP_LABELS = {"attention": "attention", "mlp": "MLP", "other": "other"}
COMPONENT_HATCHES = ("", "//", "..", "xx", "\\\\", "++")  # one per stacked component, for greyscale
FIT_PAD_POINTS = 6  # blank border around each chart, in points
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")

RC: dict[str, Any] = {
    "svg.hashsalt": "reportgen",  # fixed ids: same inputs, same bytes
    "svg.fonttype": "none",  # text stays text (searchable, small)
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same layout on every machine
    "font.size": 9.5,
    "text.parse_math": False,  # a "$" in a model id is text, not mathtext
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.titleweight": "bold",
    "axes.titlesize": 11,
    "legend.frameon": False,
}


@dataclass(frozen=True)
class Series:
    """One plotted series: a name for the legend, one y value per x, a colour."""

    name: str
    values: tuple[float, ...]
    colour: str


@dataclass(frozen=True)
class ChartData:
    """Everything one chart plots, independent of how it is drawn."""

    filename: str
    title: str
    xlabel: str
    ylabel: str
    categories: tuple[str, ...]  # x categories (bar charts, rank charts) or point labels (scatter)
    series: tuple[Series, ...]
    groups: tuple[str, ...] = ()  # per category, for charts coloured by module group
    x_values: tuple[float, ...] = ()  # numeric x (scatter, rank charts)
    alt: str = ""
    references: tuple[tuple[float, str], ...] = ()  # horizontal reference lines: value and label


def module_params_chart(report: ModelReport) -> ChartData:
    """Parameters of each module type (all layers), coloured by attention / MLP."""
    rows = report.modules
    return ChartData(
        filename="params_by_module.svg",
        title="Parameters by module type",
        xlabel="parameters (all layers)",
        ylabel="module type",
        categories=tuple(row.tag for row in rows),
        series=(Series("parameters", tuple(float(row.params) for row in rows), GROUP_COLOURS["attention"]),),
        groups=tuple(row.group for row in rows),
        alt="Horizontal bars: the parameters of each module type, attention and MLP in different colours.",
    )


def trainables_by_rank_chart(report: ModelReport) -> ChartData:
    """LoRA trainable parameters against rank for each applicable scenario (log y)."""
    rows = [row for row in scenario_rows(report) if row.applicable]
    series = tuple(
        Series(row.scenario.name, tuple(float(cell.formula_trainable or 0) for cell in row.cells),
               OKABE_ITO[index % len(OKABE_ITO)])
        for index, row in enumerate(rows)
    )
    return ChartData(
        filename="trainables_by_rank.svg",
        title="LoRA trainable parameters by rank",
        xlabel="LoRA rank r",
        ylabel="trainable parameters (log scale)",
        categories=tuple(str(rank) for rank in report.ranks),
        series=series,
        x_values=tuple(float(rank) for rank in report.ranks),
        alt="Lines: trainable parameters of each targeting scenario at each rank, on a log scale.",
    )


def trainable_percent_chart(report: ModelReport) -> ChartData:
    """Trainable parameters as a percent of the whole model, per applicable scenario, one bar per rank."""
    rows = [(row.scenario.name, row.cells) for row in scenario_rows(report) if row.applicable]
    rows += [(row.module.tag, row.cells) for row in module_lora_rows(report) if row.cells[0].applicable]
    series = tuple(
        Series(f"r={rank}", tuple(cells[index].percent_of_model or 0.0 for _, cells in rows),
               OKABE_ITO[index % len(OKABE_ITO)])
        for index, rank in enumerate(report.ranks)
    )
    return ChartData(
        filename="trainable_percent.svg",
        title="Trainable share of the whole model, per scenario",
        xlabel="scenario",
        ylabel="trainable parameters, % of the model",
        categories=tuple(name for name, _ in rows),
        series=series,
        alt="Grouped bars: trainable parameters as a percent of the model for each scenario, one bar per rank.",
    )


def memory_chart(report: ModelReport) -> ChartData:
    """Full, LoRA and QLoRA training memory at the chosen scenario and rank, components stacked, in bytes."""
    rows = report.memory_headline
    labels = [label for label, _ in rows[0].components] if rows else []
    series = tuple(
        Series(label, tuple(float(row.components[index][1]) for row in rows), OKABE_ITO[index % len(OKABE_ITO)])
        for index, label in enumerate(labels)
    )
    return ChartData(
        filename="memory.svg",
        title="Training memory: full fine-tuning, LoRA, QLoRA",
        xlabel="",
        ylabel="GB (10^9 bytes)",
        categories=tuple(f"{method_title(row)}\n{memory_setting(row)}" for row in rows),
        series=series,
        references=tuple((float(size * GIB), f"{size} GiB GPU") for size in report.memory_context.gpu_sizes_gib),
        alt="Stacked bars: the training memory of full fine-tuning, LoRA and QLoRA, component by component, "
            "with lines at common GPU sizes.",
    )


# --- drawing ---------------------------------------------------------------------------------


def _units(value: float, _position: float | None = None) -> str:
    """An axis tick in readable units without trailing zeros: 50M, 1.5B, 300K (FuncFormatter's signature)."""
    return axis_count(value)


@contextmanager
def _figure(width: float, height: float) -> Iterator[tuple[Figure, Axes]]:
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]  # (its stubs want literal keys)
        figure = Figure(figsize=(width, height))
        yield figure, figure.add_subplot()


def _svg(figure: Figure, relayout: bool = True) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]  # (its stubs want literal keys)
        # Laid out once, here (a layout engine would lay the figure out again at every draw of savefig).
        if relayout:
            figure.tight_layout(pad=FIT_PAD_POINTS / RC["font.size"])
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()


def _log_axis(axis: object) -> None:
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # type: ignore[attr-defined]
    axis.set_major_formatter(FuncFormatter(_units))  # type: ignore[attr-defined]
    axis.set_minor_formatter(NullFormatter())  # type: ignore[attr-defined]


def draw_module_params(chart: ChartData) -> str:
    """Horizontal bars, one per module type, attention and MLP told apart by colour and hatch."""
    with _figure(7.2, 0.45 * len(chart.categories) + 1.3) as (figure, axes):
        values = chart.series[0].values
        positions = range(len(chart.categories))[::-1]
        for position, value, group in zip(positions, values, chart.groups):
            axes.barh(position, value, color=GROUP_COLOURS.get(group, "#999999"),
                      hatch=GROUP_HATCHES.get(group, ""), edgecolor="white", linewidth=0.5)
            axes.annotate(human_count(int(value)), (value, position), xytext=(4, 0),
                          textcoords="offset points", va="center", fontsize=8.5)
        axes.set_yticks(list(positions), chart.categories)
        axes.xaxis.set_major_formatter(FuncFormatter(_units))
        axes.set_xlim(0, max(values) * 1.15)
        axes.grid(axis="y", visible=False)
        for group in dict.fromkeys(chart.groups):
            axes.bar(0, 0, color=GROUP_COLOURS.get(group, "#999999"), hatch=GROUP_HATCHES.get(group, ""),
                     edgecolor="white", label=GROUP_LABELS.get(group, group))
        axes.legend(loc="upper right")
        _labels(axes, chart)
        return _svg(figure)


def draw_trainables_by_rank(chart: ChartData) -> str:
    """One line per scenario against rank, log y."""
    with _figure(7.2, 3.8) as (figure, axes):
        for index, series in enumerate(chart.series):
            axes.plot(chart.x_values, series.values, color=series.colour, marker=MARKERS[index % len(MARKERS)],
                      linestyle=LINESTYLES[index % len(LINESTYLES)], label=series.name)
        axes.set_yscale("log")
        _log_axis(axes.yaxis)
        axes.set_xscale("log", base=2)
        axes.set_xticks(chart.x_values, chart.categories)
        axes.xaxis.set_minor_formatter(NullFormatter())
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
        _labels(axes, chart)
        return _svg(figure)


def draw_grouped_bars(chart: ChartData) -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    with _figure(7.2, 4.0) as (figure, axes):
        count = len(chart.series)
        width = 0.8 / max(count, 1)
        for index, series in enumerate(chart.series):
            offset = (index - (count - 1) / 2) * width
            axes.bar([position + offset for position in range(len(chart.categories))], series.values, width,
                     color=series.colour, hatch=("", "//", "..", "xx")[index % 4], edgecolor="white",
                     linewidth=0.5, label=series.name)
        axes.set_xticks(range(len(chart.categories)), chart.categories, rotation=35, ha="right")
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}%"))
        axes.grid(axis="x", visible=False)
        axes.legend(loc="upper right")
        _labels(axes, chart)
        return _svg(figure)


def draw_memory(chart: ChartData) -> str:
    """Stacked vertical bars in GB, one per method, with labelled GPU-size lines."""
    with _figure(7.2, 4.4) as (figure, axes):
        positions = range(len(chart.categories))
        bottoms = [0.0] * len(chart.categories)
        for index, series in enumerate(chart.series):
            heights = [value / GB for value in series.values]
            axes.bar(positions, heights, 0.55, bottom=bottoms, color=series.colour, edgecolor="white",
                     hatch=COMPONENT_HATCHES[index % len(COMPONENT_HATCHES)], linewidth=0.5, label=series.name)
            bottoms = [bottom + height for bottom, height in zip(bottoms, heights)]
        for position, total in zip(positions, bottoms):
            axes.annotate(f"{total:,.2f} GB", (position, total), xytext=(0, 3), textcoords="offset points",
                          ha="center", fontsize=8.5, fontweight="bold")
        top = max(bottoms + [value / GB for value, _ in chart.references]) * 1.12
        for value, label in reference_labels(chart.references, top * GB):
            axes.axhline(value / GB, color="#555555", linestyle="--", linewidth=0.9, zorder=1.5)
            if label:
                axes.annotate(label, (1.0, value / GB), xycoords=("axes fraction", "data"), xytext=(-2, 3),
                              textcoords="offset points", ha="right", fontsize=8, color="#333333")
        axes.set_ylim(0, top)
        axes.set_xlim(-0.6, len(chart.categories) - 0.4)
        axes.set_xticks(list(positions), chart.categories)
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        axes.grid(axis="x", visible=False)
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5)
        _labels(axes, chart)
        return _svg(figure)


def reference_labels(references: tuple[tuple[float, str], ...], top: float) -> list[tuple[float, str]]:
    """Reference lines with their labels; a label that would sit on the one below joins it instead."""
    placed: list[tuple[float, str]] = []
    for value, label in sorted(references):
        if placed and placed[-1][1] and (value - placed[-1][0]) < 0.06 * top:
            below, text = placed[-1]
            placed[-1] = (below, "")
            placed.append((value, f"{text.removesuffix(' GPU')} / {label}"))
            continue
        placed.append((value, label))
    return placed


def _labels(axes: Axes, chart: ChartData) -> None:
    axes.set_title(chart.title, loc="left")
    axes.set_xlabel(chart.xlabel)
    axes.set_ylabel(chart.ylabel)


DRAWERS = {
    "params_by_module.svg": draw_module_params,
    "trainables_by_rank.svg": draw_trainables_by_rank,
    "trainable_percent.svg": draw_grouped_bars,
    "memory.svg": draw_memory,
}


def draw(chart: ChartData) -> ChartRef:
    """A chart drawn as SVG, with its file name and alt text."""
    return ChartRef(filename=chart.filename, alt=chart.alt, svg=DRAWERS[chart.filename](chart))


def report_charts(report: ModelReport) -> tuple[ChartRef, ...]:
    """Every chart of one model's page."""
    charts = (module_params_chart(report), trainables_by_rank_chart(report), trainable_percent_chart(report),
              memory_chart(report))
    return tuple(draw(chart) for chart in charts if chart.series and chart.categories)


def index_charts(result: RunResult, highlight: tuple[str, ...] = (),
                 notes: list[str] | None = None) -> tuple[ChartRef, ...]:
    """The index's cross-model charts (reportgen.render.scatter draws them); with ``notes``, a chart that cannot
    be drawn is said there and left out."""
    from .scatter import index_charts as scatter_charts  # scatter builds on this module's drawing helpers

    return scatter_charts(result, highlight, notes)


XML_PROLOGUE = re.compile(r"^<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?")


METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.DOTALL)


def inline_svg(svg: str) -> str:
    """An SVG file's text without the XML prologue, doctype and metadata, ready to sit inside HTML."""
    return METADATA.sub("", XML_PROLOGUE.sub("", svg, count=1), count=1)
