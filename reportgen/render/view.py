"""The view model: the data model arranged as the report's tables, read by every template.

Renderers only format. The rows, sort orders and derived figures the HTML and
Markdown show are arranged here, once, so both formats carry the same content
and no template does arithmetic. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import (
    Cell,
    MergeCheck,
    ModelFailure,
    ModelReport,
    ModuleRow,
    RunResult,
    Scenario,
    lora_matrix_params,
    percent,
)

MERGE_HEADLINES = {
    "passed": "passed",
    "failed": "FAILED",
    "skipped": "skipped",
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
    def failure_colspan(self) -> int:
        """Columns a failure's error spans: parameters, one per rank, PEFT check, merge check."""
        return 3 + len(self.result.ranks)


def _cells_by_rank(report: ModelReport, scenario: str) -> tuple[Cell, ...]:
    return tuple(report.cell(scenario, rank) for rank in report.ranks)


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
    return tuple(
        ModuleLoraRow(row, _cells_by_rank(report, row.tag)) for row in report.modules if row.tag in names
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
        ("logits equal within tolerance", check.passed),
        ("largest absolute logit difference", check.max_abs_diff),
        ("tolerance", check.tolerance),
        ("materialised", check.materialised),
        ("device", check.device),
        ("dtype", check.dtype),
        ("parameters after merge", f"{check.params_after_merge:,}" if check.params_after_merge is not None else None),
        ("note", check.note),
    ]
    return tuple(
        Field(label, _field_text(value)) for label, value in values if value is not None and value != ""
    )


def _field_text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
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
