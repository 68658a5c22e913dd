"""The frozen data model every stage hands on and every renderer reads.

Nothing here imports torch: the analysis stages fill these dataclasses, the
renderers only format them. Derived figures (millions, percentages, labels)
are properties computed here, once, so no template does arithmetic.

The model is split over three modules to keep each short: the rows of the
analysis (``rows.py``: ModuleRow, Cell and the cell statuses) and the memory
estimate's records (``memory_data.py``) are re-exported here, so every reader
imports the data model from one place. Number formatting lives in ``formatting.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .formatting import human_count, millions
from .variants import ALL_LINEAR

# The memory estimate's records live in memory_data.py; the data model is read from here, so re-exported.
from .memory_data import (
    ADAM_8BIT_2022 as ADAM_8BIT_2022,
    BASE_DTYPES as BASE_DTYPES,
    KORTHIKANTI_2022 as KORTHIKANTI_2022,
    LLM_INT8_2022 as LLM_INT8_2022,
    METHODS as METHODS,
    OPTIMIZERS as OPTIMIZERS,
    PEFT_SOURCE as PEFT_SOURCE,
    QLORA_2023 as QLORA_2023,
    ZERO_2020 as ZERO_2020,
    Assumption as Assumption,
    MemoryAssumptions as MemoryAssumptions,
    MemoryContext as MemoryContext,
    MemoryRow as MemoryRow,
    MemoryValidation as MemoryValidation,
)

# The analysis's rows live in rows.py; re-exported, as the data model is read from here.
from .rows import (
    CHECK_LABELS as CHECK_LABELS,
    MISMATCH as MISMATCH,
    NO_MATCH as NO_MATCH,
    NOT_APPLICABLE as NOT_APPLICABLE,
    OK as OK,
    Cell as Cell,
    CellStatus as CellStatus,
    ModuleRow as ModuleRow,
    lora_matrix_params as lora_matrix_params,
)

SCHEMA_VERSION = 1

class MergeStatus(StrEnum):
    """The merge check's outcome; the value is what report.json says."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"
    SKIPPED = "skipped"  # not run, with the reason (--no-merge-check, too large for the budget)
    ERROR = "error"  # it started but could not finish
    NOT_RUN = "not_run"


@dataclass(frozen=True)
class ReferenceConfig:
    """The walk-through's own PEFT step, which every model repeats and the merge check adapts with."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    scenario: str = "qkvo"  # q, k, v and o
    method: str = "lora"

    @property
    def label(self) -> str:
        """In words, for headings: "q, k, v, o at r=16"."""
        return f"q, k, v, o at r={self.rank}"


REFERENCE = ReferenceConfig()  # LoraConfig(r=16, lora_alpha=32, target_modules=[q, k, v, o], lora_dropout=0.05)


@dataclass(frozen=True)
class Scenario:
    """A named set of LoRA targets: module roles or tags, or PEFT's own "all-linear"."""

    name: str
    targets: tuple[str, ...]
    purpose: str = ""


# The walk-through's three scenarios, by role, with the task each suits.
SEED_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("qv_only", ("q", "v"), "style/format tasks"),
    Scenario("qkvo", ("q", "k", "v", "o"), "instruction following"),
    Scenario("all_linear", (ALL_LINEAR,), "domain adaptation"),
)


@dataclass(frozen=True)
class Dimensions:
    """The language model's widths as its config declares them, under their common names: the one record of them.

    0 where the config declares no single value (an attention-free model's heads,
    a per-layer intermediate size); no shape rule uses such a width.
    """

    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    # Not in report.json: what the shape rules of experts and of unusual attention read.
    num_experts: int = field(default=1, metadata={"json": False})
    expert_intermediate_size: int = field(default=0, metadata={"json": False})  # one routed expert's MLP width
    shared_intermediate_size: int = field(default=0, metadata={"json": False})  # the shared experts' MLP width
    attention_input: int = field(default=0, metadata={"json": False})  # what attention reads, if not hidden (Zamba2)

    @property
    def label(self) -> str:
        """The language model's widths in words; a width its config does not declare as one number is left out."""
        parts = [f"{self.num_layers} layers" if self.num_layers else "layers not declared",
                 f"hidden {self.hidden_size:,}" if self.hidden_size else "",
                 f"{self.num_attention_heads} heads ({self.num_key_value_heads} key/value), head_dim {self.head_dim}"
                 if self.num_attention_heads else "no attention heads declared",
                 f"intermediate {self.intermediate_size:,}" if self.intermediate_size else "intermediate size per layer",
                 f"vocabulary {self.vocab_size:,}" if self.vocab_size else ""]
        return ", ".join(part for part in parts if part)


@dataclass(frozen=True)
class ModelInfo:
    """The model card: what was analysed and where its config came from."""

    id: str
    source: str
    architecture: str
    model_type: str
    total_params: int
    linear_params: int
    tied_embeddings: bool
    dimensions: Dimensions = field(metadata={"json": "inline"})  # report.json lists its widths in place
    build_note: str = ""  # what was built when it is not transformers' causal LM of the config

    @property
    def linear_millions(self) -> float:
        return millions(self.linear_params)


@dataclass(frozen=True)
class ModelFacts:
    """What a cell's extras add beyond the adapted layers, read once from the model."""

    model_type: str
    total_params: int
    bias_params: int  # every parameter whose name contains "bias" (PEFT's bias="all" rule)
    module_params: tuple[tuple[str, int], ...]  # modules_to_save name -> parameters of the modules it names

    def saved_params(self, names: Iterable[str]) -> int:
        """Parameters PEFT copies for modules_to_save."""
        sizes = dict(self.module_params)
        return sum(sizes.get(name, 0) for name in names)


@dataclass(frozen=True)
class PeftReference:
    """The walk-through's own PEFT step, repeated on this model, in PEFT's words."""

    config: str
    summary_line: str
    trainable_params: int
    all_params: int

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable_params / self.all_params


@dataclass(frozen=True)
class CountLine:
    """One way of counting a model's parameters, and why it differs from the unique count."""

    label: str
    count: int
    why: str
    difference: int  # count minus the unique-parameter count

    @property
    def human(self) -> str:
        return human_count(self.count)


@dataclass(frozen=True)
class MergeCheck:
    """The merge_and_unload verification on real tensors (status "not_run" until it runs)."""

    status: MergeStatus
    passed: bool | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    materialised: str = ""
    device: str = ""
    dtype: str = ""
    params_after_merge: int | None = None
    note: str = ""
    lora_effect: float | None = None  # max |adapted - base| logits: how far the LoRA moved them (non-vacuity)
    all_linear: MergeCheck | None = None  # the second pass: all-linear on a replica with every kind of layer
    seconds: float | None = field(default=None, metadata={"json": False})  # how long both passes took (make zoo)

    @property
    def status_label(self) -> str:
        """The status in words: "not run", "not applicable", "passed" ..."""
        return self.status.replace("_", " ")


@dataclass(frozen=True)
class Printouts:
    """The architecture printouts: base, PEFT-wrapped, merged."""

    base: str
    peft: str
    merged: str = ""


@dataclass(frozen=True)
class Environment:
    python: str
    torch: str
    transformers: str
    peft: str


@dataclass(frozen=True)
class ModelReport:
    """Everything known about one model: the single source of report.json, .md and .html."""

    slug: str
    model: ModelInfo
    modules: tuple[ModuleRow, ...]
    cells: tuple[Cell, ...]
    ranks: tuple[int, ...]
    scenarios: tuple[Scenario, ...]
    peft_reference: PeftReference | None
    printouts: Printouts
    merge_check: MergeCheck
    environment: Environment
    schema_version: int = SCHEMA_VERSION
    memory: tuple[MemoryRow, ...] = ()
    memory_assumptions: tuple[Assumption, ...] = ()
    memory_context: MemoryContext = MemoryContext()
    methods: tuple[str, ...] = ("lora",)
    explanation: tuple[CountLine, ...] = ()
    warnings: tuple[str, ...] = ()  # what libraries warned or printed while this model was built and counted

    @property
    def all_confirmed(self) -> bool:
        return all(cell.status != MISMATCH for cell in self.cells)

    @property
    def peft_reference_note(self) -> str:
        """Why the walk-through's PEFT step is missing: what its scenario's cells say (PEFT's refusal, a fused qkv)."""
        notes = [cell.note for cell in self.cells
                 if (cell.scenario, cell.method) == (REFERENCE.scenario, REFERENCE.method) and not cell.applicable]
        return notes[0].rstrip(".") if notes else "this model has no q, k, v and o projections to target"

    @property
    def parts(self) -> tuple[tuple[str, int, int], ...]:
        """Each part of the model the module table covers: (part, module groups, weights), language model first."""
        groups: dict[str, list[ModuleRow]] = {}
        for row in self.modules:
            groups.setdefault(row.part, []).append(row)
        return tuple((part, len(rows), sum(row.params for row in rows)) for part, rows in groups.items())

    @property
    def parts_label(self) -> str:
        """The parts in words, for a model with more than the language model ("" otherwise)."""
        if len(self.parts) < 2:
            return ""
        where = {row.part: row.layer_prefix for row in reversed(self.modules) if row.layer_prefix}
        return "; ".join(f"{part}{f' ({where[part]})' if part in where else ''}: {groups} module groups, "
                         f"{human_count(weights)} weights" for part, groups, weights in self.parts)

    @property
    def uncounted_label(self) -> str:
        """The cells PEFT did not count, and why in a word: "4 not applicable, 2 no match" ("" when none)."""
        counts = [(self.status_count(NOT_APPLICABLE), "not applicable"), (self.status_count(NO_MATCH), "no match")]
        return ", ".join(f"{count} {label}" for count, label in counts if count)

    def status_count(self, status: str) -> int:
        """How many cells have this status."""
        return sum(1 for cell in self.cells if cell.status == status)

    @property
    def checks(self) -> tuple[int, int]:
        """(passed, run): cells PEFT counted, module rows with a config rule, and the merge check if run."""
        counted = [cell.status == OK for cell in self.cells if cell.peft_trainable is not None]
        derived = [bool(row.agrees) for row in self.modules if row.agrees is not None]
        merged = [bool(self.merge_check.passed)] if self.merge_check.passed is not None else []
        results = counted + derived + merged
        return sum(results), len(results)

    @property
    def status(self) -> str:
        """The model's status in the index: ok, or mismatch when PEFT and the formula disagree anywhere."""
        return OK if self.all_confirmed else MISMATCH

    @property
    def cells_confirmed(self) -> int:
        return sum(1 for cell in self.cells if cell.confirmed)

    @property
    def cells_counted(self) -> int:
        """Cells whose scenario applies to this model (the others have no count to confirm)."""
        return sum(1 for cell in self.cells if cell.applicable)

    @property
    def largest_module(self) -> ModuleRow:
        """The module type with the largest single weight matrix (the first such in table order)."""
        return max(self.modules, key=lambda row: row.matrix_params)

    @property
    def primary_method(self) -> str:
        """The method the scenario and per-module tables, the charts and the index quote: the study's first."""
        return self.methods[0] if self.methods else "lora"

    @property
    def mismatches(self) -> tuple[Cell, ...]:
        return tuple(cell for cell in self.cells if cell.status == MISMATCH)

    def cell(self, scenario: str, rank: int, method: str = "lora") -> Cell:
        """The cell of one scenario at one rank."""
        for cell in self.cells:
            if (cell.scenario, cell.rank, cell.method) == (scenario, rank, method):
                return cell
        raise KeyError((scenario, rank, method))

    @property
    def memory_headline(self) -> tuple[MemoryRow, ...]:
        """full, lora and qlora at the chosen scenario and rank: the chart's bars."""
        return tuple(row for row in self.memory if row.headline)

    def module(self, tag: str) -> ModuleRow:
        for row in self.modules:
            if row.tag == tag:
                return row
        raise KeyError(tag)


@dataclass(frozen=True)
class ModelFailure:
    """A line of the models file that could not be reported, and why."""

    id: str
    slug: str
    line: int
    error: str


@dataclass(frozen=True)
class RunResult:
    """The whole run: every model's report and every failure, in models-file order."""

    reports: tuple[ModelReport, ...]
    failures: tuple[ModelFailure, ...]
    ranks: tuple[int, ...]
    environment: Environment
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The files the run's ``finish`` hook wrote for the reports (relative to the output folder): the manifest's body.
    files: tuple[str, ...] = field(default=(), metadata={"json": False})

    @property
    def ok(self) -> bool:
        return not self.failures


def to_jsonable(value: Any) -> Any:
    """A dataclass tree as plain JSON types (tuples become lists), field order kept."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        payload: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            if f.metadata.get("json") is False:
                continue
            item = to_jsonable(getattr(value, f.name))
            if f.metadata.get("json") == "inline":  # a nested record whose fields read as the parent's own
                payload.update(item)
            else:
                payload[f.name] = item
        return payload
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    return value
