"""The frozen data model every stage hands on and every renderer reads.

Nothing here imports torch: the analysis stages fill these dataclasses, the
renderers only format them. Derived figures (millions, percentages, labels)
are properties computed here, once, so no template does arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

# Cell statuses. "ok": formula and PEFT agree; "mismatch": they don't (shown,
# never hidden); "not_applicable": the scenario cannot be expressed on this
# architecture (for example q and v alone inside a fused qkv projection);
# "no_match": the scenario's targets name no module of this model.
OK = "ok"
MISMATCH = "mismatch"
NOT_APPLICABLE = "not_applicable"
NO_MATCH = "no_match"


def millions(count: int) -> float:
    """A parameter count in millions, rounded to two places as the walk-through prints it."""
    return round(count / 1e6, 2)


def human_count(count: int) -> str:
    """A parameter count with a readable unit: 973.08M, 1.24B, 294.91K."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:.2f}{unit}"
    return str(count)


def percent(part: int, whole: int) -> float | None:
    """part as a percentage of whole (1.02 means 1.02 %), None when whole is 0."""
    return 100.0 * part / whole if whole else None


@dataclass(frozen=True)
class Scenario:
    """A named set of LoRA targets: module roles or tags, or PEFT's own "all-linear"."""

    name: str
    targets: tuple[str, ...]
    purpose: str = ""


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
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int

    @property
    def total_human(self) -> str:
        return human_count(self.total_params)

    @property
    def linear_millions(self) -> float:
        return millions(self.linear_params)


@dataclass(frozen=True)
class ModuleRow:
    """One module type of the repeated blocks: every layer's module of that name."""

    tag: str
    role: str  # q, k, v, o, qkv, gate, up, down, gate_up, router, other
    group: str  # attention, mlp, other
    kind: str  # linear, conv1d, experts
    layers: int
    shape: tuple[int, int]  # (out_features, in_features) of one layer's weight
    params: int  # weights of all layers (experts included), biases not counted
    bias_params: int
    experts: int  # 1 unless the weight is a fused (experts, out, in) parameter
    expected_shape: tuple[int, int] | None  # derived from the config alone
    expected_params: int | None
    peft_target: str  # the name that selects exactly these modules in PEFT

    @property
    def millions(self) -> float:
        return millions(self.params)

    @property
    def agrees(self) -> bool | None:
        """Whether the measured shape and count equal the config-derived ones (None: no rule)."""
        if self.expected_params is None:
            return None
        return self.expected_shape == self.shape and self.expected_params == self.params

    @property
    def shape_label(self) -> str:
        out_features, in_features = self.shape
        prefix = f"{self.experts} x " if self.experts > 1 else ""
        return f"{prefix}{out_features} x {in_features}"


@dataclass(frozen=True)
class Cell:
    """One (scenario, rank, method) of the study, counted by formula and by PEFT."""

    scenario: str
    targets: tuple[str, ...]
    rank: int
    method: str
    matrices: int
    targeted_params: int
    formula_trainable: int | None
    peft_trainable: int | None
    percent_of_targeted: float | None
    percent_of_model: float | None
    status: str
    note: str = ""

    @property
    def confirmed(self) -> bool:
        return self.status == OK

    @property
    def difference(self) -> int | None:
        if self.formula_trainable is None or self.peft_trainable is None:
            return None
        return self.peft_trainable - self.formula_trainable

    @property
    def targeted_millions(self) -> float:
        return millions(self.targeted_params)

    @property
    def trainable_millions(self) -> float | None:
        count = self.peft_trainable if self.peft_trainable is not None else self.formula_trainable
        return None if count is None else millions(count)


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
class MergeCheck:
    """The merge_and_unload verification on real tensors (status "not_run" until it runs)."""

    status: str  # passed, failed, skipped, not_run
    passed: bool | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    materialised: str = ""
    device: str = ""
    dtype: str = ""
    params_after_merge: int | None = None
    note: str = ""


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

    @property
    def all_confirmed(self) -> bool:
        return all(cell.status != MISMATCH for cell in self.cells)

    @property
    def mismatches(self) -> tuple[Cell, ...]:
        return tuple(cell for cell in self.cells if cell.status == MISMATCH)

    def cell(self, scenario: str, rank: int, method: str = "lora") -> Cell:
        """The cell of one scenario at one rank."""
        for cell in self.cells:
            if (cell.scenario, cell.rank, cell.method) == (scenario, rank, method):
                return cell
        raise KeyError((scenario, rank, method))

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

    @property
    def ok(self) -> bool:
        return not self.failures


def to_jsonable(value: Any) -> Any:
    """A dataclass tree as plain JSON types (tuples become lists), field order kept."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    return value
