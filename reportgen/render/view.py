"""The view model: the data model arranged as the report's tables, read by every template.

Renderers only format. The rows, sort orders and derived figures the HTML and
Markdown show are arranged here, once, so both formats carry the same content
and no template does arithmetic. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import (
    Cell,
    MemoryRow,
    MergeCheck,
    ModelFailure,
    ModelReport,
    ModuleRow,
    RunResult,
    Scenario,
    lora_matrix_params,
)
from ..formatting import count, human_count, percent, yes_no
from ..rows import LANGUAGE_MODEL
from .compare import MethodsView, method_title as peft_method_title, methods_view
from .memory_view import MemoryView, memory_setting, memory_view, method_title

MODULE_CHARTS = ("params_by_module.svg",)
MEMORY_CHARTS = ("memory.svg",)

BANNER_LIMIT = 10  # models a mismatch banner names; the rest are counted, the model table lists them all

MERGE_HEADLINES = {
    "passed": "passed",
    "failed": "FAILED",
    "error": "ERROR: the check could not finish",
    "skipped": "skipped",
    "not_applicable": "not applicable",
    "not_run": "not run",
}


@dataclass(frozen=True)
class ScenarioRow:
    """One targeting scenario with its cell at every rank of the study (in rank order)."""

    scenario: Scenario
    cells: tuple[Cell, ...]

    @property
    def applicable(self) -> bool:
        return any(cell.applicable for cell in self.cells)

    @property
    def matrices(self) -> int:
        return self.cells[0].matrices

    @property
    def targeted_millions(self) -> float:
        return self.cells[0].targeted_millions

    @property
    def targets(self) -> tuple[str, ...]:
        """The module names PEFT targets (for a scenario that selects none: the targets as asked)."""
        return self.cells[0].targets

    @property
    def note(self) -> str:
        """Why the scenario selects nothing on this model ("" when it applies)."""
        return "" if self.applicable else self.cells[0].note

    @property
    def parts_note(self) -> str:
        """The parts beyond the language model that the scenario's names reach ("" when none)."""
        cell = next((cell for cell in self.cells if cell.applicable), None)
        others = [part for part in (cell.parts if cell else ()) if part != "language model"]
        if cell is not None and cell.confirmed and cell.note:
            return cell.note  # PEFT's MoE conversion moved the names onto the experts
        if not others:
            return ""
        if len(others) == len(cell.parts if cell else ()):
            return f"adapts the {', '.join(others)} only"
        return f"also adapts the {', '.join(others)} (PEFT matches these names there too)"


@dataclass(frozen=True)
class ModuleLoraRow:
    """LoRA on one module type alone, at every rank: its single-module scenario's cells."""

    module: ModuleRow
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class LoraExample:
    """The LoRA formula filled in for one weight matrix of a module type at one rank."""

    module: ModuleRow
    rank: int
    cell: Cell | None  # the module's own single-module cell at this rank, where there is one

    @property
    def out_features(self) -> int:
        return self.module.shape[0]

    @property
    def in_features(self) -> int:
        return self.module.shape[1]

    @property
    def frozen(self) -> int:
        """The frozen weights of one matrix W (m x n)."""
        return self.out_features * self.in_features

    @property
    def trainable(self) -> int:
        """B (m x r) plus A (r x n) for one matrix."""
        return lora_matrix_params(self.out_features, self.in_features, self.rank)

    @property
    def percent_of_matrix(self) -> float:
        value = percent(self.trainable, self.frozen)
        assert value is not None  # a module row never has an empty weight
        return value

    @property
    def matrices(self) -> int:
        return self.module.layers * self.module.experts


@dataclass(frozen=True)
class ModulePart:
    """The module groups of one part of the model (language model, vision tower, head ...), for its own table."""

    name: str
    rows: tuple[ModuleRow, ...]

    @property
    def anchor(self) -> str:
        return self.name.replace(" ", "-")

    @property
    def open(self) -> bool:
        """Whether the page shows the part open: the language model is; the towers and heads start collapsed."""
        return self.name == LANGUAGE_MODEL

    @property
    def label(self) -> str:
        groups = len(self.rows)
        return f"{groups} module group{'' if groups == 1 else 's'}, {human_count(sum(row.params for row in self.rows))} weights"


@dataclass(frozen=True)
class Field:
    """One labelled value of a small key-value table (model card, merge check)."""

    label: str
    value: str


@dataclass(frozen=True)
class ReportView:
    """Everything one model's page shows, in the order it shows it."""

    report: ModelReport
    scenario_rows: tuple[ScenarioRow, ...]
    module_lora_rows: tuple[ModuleLoraRow, ...]
    examples: tuple[LoraExample, ...]
    merge_fields: tuple[Field, ...]
    charts: tuple[ChartRef, ...]
    memory: MemoryView
    methods: MethodsView

    @property
    def method_title(self) -> str:
        """The method the scenario and per-module tables show (the study's first)."""
        return peft_method_title(self.report.primary_method)

    @property
    def over_target(self) -> tuple[Cell, ...]:
        """Cells of the scenario and per-module tables whose adapter outgrows the weights it adapts (over 100 %)."""
        rows = [row.cells for row in self.scenario_rows] + [row.cells for row in self.module_lora_rows]
        return tuple(cell for cells in rows for cell in cells if cell.over_target)

    @property
    def module_parts(self) -> tuple[ModulePart, ...]:
        """The module table split by part, in the order the parts first appear (the language model first)."""
        parts: dict[str, list[ModuleRow]] = {}
        for row in self.report.modules:
            parts.setdefault(row.part, []).append(row)
        return tuple(ModulePart(name, tuple(rows)) for name, rows in parts.items())

    @property
    def module_charts(self) -> tuple[ChartRef, ...]:
        return tuple(chart for chart in self.charts if chart.filename in MODULE_CHARTS)

    @property
    def scenario_charts(self) -> tuple[ChartRef, ...]:
        return tuple(chart for chart in self.charts if chart.filename not in MODULE_CHARTS + MEMORY_CHARTS)

    @property
    def memory_charts(self) -> tuple[ChartRef, ...]:
        return tuple(chart for chart in self.charts if chart.filename in MEMORY_CHARTS)

    @property
    def largest(self) -> ModuleRow:
        return self.report.largest_module

    @property
    def note_colspan(self) -> int:
        """Columns a scenario's "not applicable" note spans: targets, matrices, targeted, two per rank."""
        return 3 + 2 * len(self.report.ranks)

    @property
    def merge_headline(self) -> str:
        return MERGE_HEADLINES.get(self.report.merge_check.status, self.report.merge_check.status)


@dataclass(frozen=True)
class ChartRef:
    """A chart file beside the page: its file name, its alt text, and its SVG markup."""

    filename: str
    alt: str
    svg: str
    labelled: tuple[str, ...] = ()  # a cross-model chart: the models its labels name (ids)
    title: str = ""  # the chart's heading on the index


@dataclass(frozen=True)
class IndexRow:
    """One model's line in the index: key numbers and status."""

    report: ModelReport
    headline_scenario: str
    headline_cells: tuple[Cell, ...]

    @property
    def html_link(self) -> str:
        return f"{self.report.slug}/report.html"

    @property
    def memory(self) -> tuple[MemoryRow, ...]:
        """The headline LoRA and QLoRA rows (none when the chosen scenario does not apply)."""
        return tuple(row for row in self.report.memory_headline if row.rank is not None)

    @property
    def memory_setting(self) -> str:
        return memory_setting(self.memory[0]) if self.memory else ""

    @property
    def memory_totals(self) -> tuple[tuple[str, int], ...]:
        """(LoRA, total bytes), (QLoRA, total bytes) at the headline setting."""
        return tuple((method_title(row), row.total_bytes) for row in self.memory)

    @property
    def md_link(self) -> str:
        return f"{self.report.slug}/report.md"


@dataclass(frozen=True)
class IndexView:
    """The whole site's front page: every model, every failure, the cross-model chart."""

    result: RunResult
    rows: tuple[IndexRow, ...]
    failures: tuple[ModelFailure, ...]
    headline_scenario: str
    charts: tuple[ChartRef, ...]

    @property
    def memory_setting(self) -> str:
        """The scenario and rank of the memory column (the same for every model of a run)."""
        return next((row.memory_setting for row in self.rows if row.memory_setting), "")

    @property
    def mismatched(self) -> tuple[IndexRow, ...]:
        """The models where the closed form and PEFT disagree somewhere."""
        return tuple(row for row in self.rows if row.report.mismatches)

    @property
    def mismatched_first(self) -> tuple[IndexRow, ...]:
        """The banner's models: those that need attention first (most disagreeing cells), at most BANNER_LIMIT."""
        ranked = sorted(self.mismatched, key=lambda row: (-len(row.report.mismatches), row.report.model.id))
        return tuple(ranked[:BANNER_LIMIT])

    @property
    def attention_first(self) -> tuple[IndexRow, ...]:
        """Every row, those that need attention first: a disagreement, then a failed or errored merge check."""
        def urgency(row: IndexRow) -> int:
            if row.report.mismatches:
                return 0
            return 1 if row.report.merge_check.status in ("failed", "error") else 2

        return tuple(sorted(self.rows, key=urgency))

    @property
    def mismatched_more(self) -> int:
        """Mismatched models the banner leaves out (the index's table lists every one)."""
        return len(self.mismatched) - len(self.mismatched_first)

    @property
    def method_titles(self) -> tuple[str, ...]:
        """The study's methods (the same for every model of a run); the first is the one the table quotes."""
        names = self.rows[0].report.methods if self.rows else ()
        return tuple(peft_method_title(name) for name in names)

    @property
    def rank_label(self) -> str:
        """The ranks of the run as one column heading: "r=8 / r=16"."""
        return " / ".join(f"r={rank}" for rank in self.result.ranks)

    def rows_of(self, ids: tuple[str, ...]) -> tuple[IndexRow, ...]:
        """The rows of these model ids, in the order given."""
        by_id = {row.report.model.id: row for row in self.rows}
        return tuple(by_id[model_id] for model_id in ids if model_id in by_id)

    @property
    def failure_colspan(self) -> int:
        """Columns a failure's error spans: parameters, one per rank, memory, PEFT check, merge check."""
        return 4 + len(self.result.ranks)


def _cells_by_rank(report: ModelReport, scenario: str) -> tuple[Cell, ...]:
    """One scenario's cells of the study's first method, in rank order (never another method's)."""
    return tuple(report.cell(scenario, rank, report.primary_method) for rank in report.ranks)


def _is_single_module(scenario: Scenario, report: ModelReport) -> bool:
    tags = {row.tag for row in report.modules}
    return scenario.targets == (scenario.name,) and scenario.name in tags


def scenario_rows(report: ModelReport) -> tuple[ScenarioRow, ...]:
    """The scenario table: every scenario but the single-module ones (those have their own table)."""
    return tuple(
        ScenarioRow(scenario, _cells_by_rank(report, scenario.name))
        for scenario in report.scenarios
        if not _is_single_module(scenario, report)
    )


def module_lora_rows(report: ModelReport) -> tuple[ModuleLoraRow, ...]:
    """Per-module LoRA at every rank, in module-table order."""
    names = {scenario.name for scenario in report.scenarios if _is_single_module(scenario, report)}
    first = {row.tag: row for row in reversed(report.modules)}  # a tag several rows share: its first row
    return tuple(
        ModuleLoraRow(row, _cells_by_rank(report, row.tag)) for row in report.modules
        if row.tag in names and first[row.tag] is row
    )


def lora_examples(report: ModelReport) -> tuple[LoraExample, ...]:
    """The formula filled in with the model's largest module, at every rank."""
    largest = report.largest_module
    by_rank = {row.module.tag: row for row in module_lora_rows(report)}
    cells = by_rank[largest.tag].cells if largest.tag in by_rank else (None,) * len(report.ranks)
    return tuple(LoraExample(largest, rank, cell) for rank, cell in zip(report.ranks, cells))


def merge_fields(check: MergeCheck) -> tuple[Field, ...]:
    """The merge check's recorded fields, as label and text, leaving out the empty ones."""
    values: list[tuple[str, object]] = [
        ("status", MERGE_HEADLINES.get(check.status, check.status)),
        ("passed (logits, structure, parameter count, tied weights)", check.passed),
        ("largest absolute logit difference", check.max_abs_diff),
        ("tolerance", check.tolerance),
        ("largest logit change the LoRA made (must exceed the tolerance)", check.lora_effect),
        ("materialised", check.materialised),
        ("device", check.device),
        ("dtype", check.dtype),
        ("parameters after merge", count(check.params_after_merge) if check.params_after_merge is not None else None),
        ("note", check.note),
    ]
    if (second := check.all_linear) is not None:
        values += [
            ("all-linear pass (every linear layer; experts and router where PEFT adapts them)",
             MERGE_HEADLINES.get(second.status, second.status)),
            ("all-linear pass: materialised", second.materialised),
            ("all-linear pass: largest absolute logit difference", second.max_abs_diff),
            ("all-linear pass: tolerance", second.tolerance),
            ("all-linear pass: largest logit change the LoRA made", second.lora_effect),
            ("all-linear pass: note", second.note),
        ]
    return tuple(
        Field(label, _field_text(value)) for label, value in values if value is not None and value != ""
    )


def _field_text(value: object) -> str:
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def report_view(report: ModelReport, charts: tuple[ChartRef, ...] = ()) -> ReportView:
    """The view of one model's page."""
    return ReportView(
        report=report,
        scenario_rows=scenario_rows(report),
        module_lora_rows=module_lora_rows(report),
        examples=lora_examples(report),
        merge_fields=merge_fields(report.merge_check),
        charts=charts,
        memory=memory_view(report),
        methods=methods_view(report),
    )


def headline_scenario(report: ModelReport) -> str:
    """The scenario the index quotes: all_linear where it applies, else the first that does."""
    rows = scenario_rows(report)
    for row in rows:
        if row.scenario.name == "all_linear" and row.applicable:
            return row.scenario.name
    return next((row.scenario.name for row in rows if row.applicable), rows[0].scenario.name)


def index_view(result: RunResult, charts: tuple[ChartRef, ...] = ()) -> IndexView:
    """The view of the index page."""
    rows = []
    for report in result.reports:
        name = headline_scenario(report)
        rows.append(IndexRow(report, name, _cells_by_rank(report, name)))
    return IndexView(
        result=result, rows=tuple(rows), failures=result.failures, headline_scenario="all_linear", charts=charts
    )
