"""The view model of the fine-tuning memory section: headline rows, the scenario x rank grid, GPU fits.

Part of the view model (reportgen.render.view), split out so that each module stays short. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..data import Assumption, MemoryContext, MemoryRow, ModelReport, Scenario
from ..formatting import GIB, human_bytes
from .compare import PEFT_TITLES

METHOD_TITLES = {"full": "Full fine-tuning", "qlora": "QLoRA", **PEFT_TITLES}


def method_title(row: MemoryRow) -> str:
    """A memory row's method as the report names it: Full fine-tuning, LoRA, QLoRA."""
    return METHOD_TITLES.get(row.method, row.method)


def memory_setting(row: MemoryRow) -> str:
    """Where an adapter row sits in the study ("all_linear, r=16"); all parameters for full fine-tuning."""
    return "all parameters" if row.rank is None else f"{row.scenario}, r={row.rank}"


@dataclass(frozen=True)
class MemoryLine:
    """One line of the headline memory table: a component's bytes under each method."""

    label: str
    values: tuple[int, ...]
    notes: tuple[str, ...] = ()  # per method, "" for none


@dataclass(frozen=True)
class GpuFit:
    """Whether each headline row fits one common GPU size."""

    gib: int
    fits: tuple[bool, ...]

    @property
    def bytes(self) -> int:
        """The GPU's memory in bytes (1 GiB = 2^30 bytes)."""
        return self.gib * GIB


@dataclass(frozen=True)
class MemoryGridRow:
    """One scenario's LoRA and QLoRA totals at every rank (None where the scenario does not apply)."""

    scenario: Scenario
    rows: tuple[MemoryRow | None, ...]  # in MemoryView.grid_columns order


@dataclass(frozen=True)
class MemoryView:
    """The fine-tuning memory section: the headline rows, the scenario x rank totals, the assumptions."""

    headline: tuple[MemoryRow, ...]  # full, lora, qlora at the chosen scenario and rank
    grid_columns: tuple[tuple[str, int], ...]  # (method, rank), rank by rank
    grid: tuple[MemoryGridRow, ...]
    assumptions: tuple[Assumption, ...]
    context: MemoryContext = MemoryContext()

    @property
    def headroom(self) -> str:
        """The headroom the fit marks leave free, in words ("1 GiB")."""
        return f"{self.context.headroom_gib:g} GiB"

    @property
    def setting_words(self) -> str:
        """Checkpointing and attention in words, defaults said as such."""
        ckpt = ("on (the default, the usual choice for LoRA on one GPU)" if self.context.grad_checkpointing
                else "off")
        attention = ("SDPA (transformers' default: no s x s scores kept)" if self.context.attention == "sdpa"
                     else "eager (the s x s scores are kept)")
        return f"Gradient checkpointing {ckpt}; attention {attention}."

    @property
    def validation(self) -> tuple[str, ...]:
        """How the estimate was checked, in words computed from the validation's summary; empty if none."""
        checked = self.context.validation
        return (checked.cpu_label, checked.gpu_label) if checked else ()

    @property
    def titles(self) -> tuple[str, ...]:
        return tuple(method_title(row) for row in self.headline)

    @property
    def settings(self) -> tuple[str, ...]:
        return tuple(memory_setting(row) for row in self.headline)

    @property
    def grid_titles(self) -> tuple[str, ...]:
        """The scenario x rank table's column titles: LoRA r=8, QLoRA r=8, ..."""
        return tuple(f"{METHOD_TITLES[method]} r={rank}" for method, rank in self.grid_columns)

    @property
    def adapter(self) -> MemoryRow | None:
        """The headline LoRA row (its scenario and rank name the chosen setting)."""
        return next((row for row in self.headline if row.rank is not None), None)

    @property
    def full(self) -> MemoryRow | None:
        return next((row for row in self.headline if row.method == "full"), None)

    @property
    def lines(self) -> tuple[MemoryLine, ...]:
        """The headline table's component lines: every component, method by method."""
        labels = [label for label, _ in self.headline[0].components] if self.headline else []
        lines = []
        for index, label in enumerate(labels):
            values = tuple(row.components[index][1] for row in self.headline)
            notes = tuple(
                f"incl. {human_bytes(row.quantisation_bytes)} quantisation constants"
                if label == "frozen weights" and row.quantisation_bytes else ""
                for row in self.headline
            )
            lines.append(MemoryLine(label, values, notes))
        return tuple(lines)

    @property
    def fits(self) -> tuple[GpuFit, ...]:
        return tuple(GpuFit(size, tuple(row.fits(size) for row in self.headline))
                     for size in self.context.gpu_sizes_gib)


def memory_grid(report: ModelReport) -> tuple[tuple[tuple[str, int], ...], tuple[MemoryGridRow, ...]]:
    """LoRA and QLoRA totals of every scenario at every rank: the columns, and one row per scenario."""
    columns = tuple((method, rank) for rank in report.ranks for method in ("lora", "qlora"))
    by_cell = {(row.method, row.scenario, row.rank): row for row in report.memory}
    rows = tuple(
        MemoryGridRow(scenario, tuple(by_cell.get((method, scenario.name, rank)) for method, rank in columns))
        for scenario in report.scenarios
    )
    return columns, rows


def memory_view(report: ModelReport) -> MemoryView:
    """The memory section of one model's page (empty when the report has no memory rows)."""
    columns, grid = memory_grid(report)
    return MemoryView(report.memory_headline, columns, grid, report.memory_assumptions, report.memory_context)
