"""The frozen data model every stage hands on and every renderer reads.

Nothing here imports torch: the analysis stages fill these dataclasses, the
renderers only format them. Derived figures (millions, percentages, labels)
are properties computed here, once, so no template does arithmetic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
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


def human_bytes(count: int) -> str:
    """A size in bytes with a readable decimal unit, GB at most so GPU sizes compare: 2.47 GB, 45.09 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(count) >= scale:
            return f"{count / scale:,.2f} {unit}"
    return f"{count} B"


def percent(part: int, whole: int) -> float | None:
    """part as a percentage of whole (1.02 means 1.02 %), None when whole is 0."""
    return 100.0 * part / whole if whole else None


def lora_matrix_params(out_features: int, in_features: int, rank: int) -> int:
    """LoRA's closed form for one weight matrix: B (out x r) plus A (r x in) = r * (out + in)."""
    return rank * (out_features + in_features)


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
    path: str = ""  # inside a layer, as PEFT keys it: "self_attn.q_proj", "mlp.experts.gate_up_proj", "mlp.gate.weight"
    layer_prefix: str = ""  # the module list holding the layers: "model.layers", "transformer.h"
    layer_indices: tuple[int, ...] = ()  # the layers that hold this module (none outside the repeated blocks)
    part: str = "language model"  # where it lives: language model, head, projector, vision tower, audio tower

    @property
    def experts_label(self) -> str:
        return f"{self.experts} experts" if self.experts > 1 else ""

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

    @property
    def expected_shape_label(self) -> str:
        """The config-derived shape as "out x in", or "-" where no rule derives it."""
        if self.expected_shape is None:
            return "-"
        prefix = f"{self.experts} x " if self.experts > 1 else ""
        return f"{prefix}{self.expected_shape[0]} x {self.expected_shape[1]}"

    @property
    def check_label(self) -> str:
        """The config-derived check in a word: agrees, DIFFERS, or no rule."""
        return {True: "agrees", False: "DIFFERS", None: "no rule"}[self.agrees]

    @property
    def matrix_params(self) -> int:
        """The weights of one layer's matrix (all experts of it): out * in * experts."""
        return self.shape[0] * self.shape[1] * self.experts


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
    options: tuple[tuple[str, str], ...] = ()  # the method's options beyond its defaults, as text
    scaling: float | None = None  # the adapter's scaling: alpha/r, or alpha/sqrt(r) with rsLoRA
    formula: str = ""  # the closed form, spelled out per module type
    parts: tuple[str, ...] = ()  # the parts of the model the cell adapts (language model, vision tower, ...)

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
    def applicable(self) -> bool:
        """Whether the scenario selects modules of this model (else note says why not)."""
        return self.status in (OK, MISMATCH)

    @property
    def check_label(self) -> str:
        """How the trainable count was checked: confirmed by PEFT, the disagreement, or why there is none."""
        if self.status == OK:
            return "confirmed by PEFT"
        if self.status == MISMATCH:
            return self.note or f"PEFT counts {self.peft_trainable}, the formula {self.formula_trainable}"
        return self.note or self.status

    @property
    def trainable_millions(self) -> float | None:
        count = self.peft_trainable if self.peft_trainable is not None else self.formula_trainable
        return None if count is None else millions(count)

    @property
    def over_target(self) -> bool:
        """Whether the adapter is larger than the weights it adapts (r*(m+n) > m*n on a small matrix)."""
        return self.percent_of_targeted is not None and self.percent_of_targeted > 100

    @property
    def rank_stabilised(self) -> bool:
        """Whether the cell uses rsLoRA's scaling alpha/sqrt(r)."""
        return ("use_rslora", "True") in self.options

    @property
    def alpha(self) -> float | None:
        """The alpha behind the scaling: scaling*sqrt(r) with rsLoRA, else scaling*r (None without scaling)."""
        if self.scaling is None:
            return None
        return self.scaling * (math.sqrt(self.rank) if self.rank_stabilised else self.rank)

    @property
    def plain_scaling(self) -> float | None:
        """alpha/r: the scaling plain LoRA would use with the same alpha."""
        return None if self.alpha is None else self.alpha / self.rank


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

    status: str  # passed, failed, skipped, not_run, error (it started but could not finish)
    passed: bool | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    materialised: str = ""
    device: str = ""
    dtype: str = ""
    params_after_merge: int | None = None
    note: str = ""
    lora_effect: float | None = None  # max |adapted - base| logits: how far the LoRA moved them (non-vacuity)


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


# Sources of the memory estimate, cited beside each assumption.
KORTHIKANTI_2022 = (
    "Korthikanti et al. 2022, Reducing Activation Recomputation in Large Transformer Models, "
    "sec. 4 (arXiv:2205.05198)"
)
QLORA_2023 = "Dettmers et al. 2023, QLoRA: Efficient Finetuning of Quantized LLMs, sec. 3 (arXiv:2305.14314)"
ADAM_8BIT_2022 = "Dettmers et al. 2022, 8-bit Optimizers via Block-wise Quantization, sec. 2 (arXiv:2110.02861)"
LLM_INT8_2022 = "Dettmers et al. 2022, LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale (arXiv:2208.07339)"
ZERO_2020 = (
    "Rajbhandari et al. 2020, ZeRO: Memory Optimizations Toward Training Trillion Parameter Models, "
    "sec. 3.1 (arXiv:1910.02054)"
)
PEFT_SOURCE = "PEFT 0.21: get_peft_model(autocast_adapter_dtype=True), LoraConfig(lora_dropout=0.0) defaults"
GIB = 2**30
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit")
BASE_DTYPES = ("fp32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class Assumption:
    """One stated assumption of the memory estimate: its value, what it means, and its source."""

    name: str
    value: str
    statement: str
    source: str


@dataclass(frozen=True)
class MemoryAssumptions:
    """The inputs of the training-memory estimate; every one is printed beside the numbers."""

    seq_len: int = 2048  # tokens per sequence
    batch_size: int = 1  # sequences per micro-batch (per GPU, per step)
    grad_checkpointing: bool = True  # recompute each layer in the backward pass
    optimizer: str = "adamw"  # adamw (fp32 m and v) or adamw-8bit (block-wise 8-bit m and v)
    base_dtype: str = "bf16"  # frozen base weights of `full` and `lora`: fp32, bf16, fp16 or int8
    double_quant: bool = True  # QLoRA's double quantisation of the NF4 absmax constants
    nf4_block_size: int = 64  # QLoRA: one absmax per 64 weights
    double_quant_block_size: int = 256  # QLoRA: one fp32 constant per 256 8-bit absmax values
    adam_8bit_block_size: int = 2048  # 8-bit Adam: one fp32 absmax per 2048 state values
    attention_scores_stored: bool = True  # eager attention keeps the s x s scores (the paper's case)
    scenario: str = "all_linear"  # the scenario of the headline rows (the chart)
    rank: int | None = None  # the rank of the headline rows; None: the largest rank of the study
    gpu_sizes_gib: tuple[int, ...] = (24, 40, 80)  # common GPU memory sizes, in GiB

    @property
    def compute_bytes(self) -> int:
        """Bytes per element of activations and 16-bit weights: 4 under fp32, else 2 (bf16)."""
        return 4 if self.base_dtype == "fp32" else 2

    def stated(self) -> tuple[Assumption, ...]:
        """Every assumption in words, with its value and source, for the report."""
        a = self
        ckpt = "on" if a.grad_checkpointing else "off"
        scores = "eager attention: s x s scores and softmax kept" if a.attention_scores_stored else (
            "memory-efficient attention: no s x s scores, an fp32 logsumexp per head and token")
        return (
            Assumption("seq_len", str(a.seq_len), "tokens per sequence", "--seq-len"),
            Assumption("batch_size", str(a.batch_size), "sequences per micro-batch on one GPU", "--batch-size"),
            Assumption("base_dtype", a.base_dtype,
                       "frozen base weights of full and lora (full trains 16-bit weights when int8 is asked "
                       "for); int8 stores one fp32 scale per output row; activations are fp32 under fp32, "
                       "else 16-bit", f"--base-dtype; {LLM_INT8_2022}"),
            Assumption("qlora_weights", f"NF4, block {a.nf4_block_size}, double quantisation "
                       f"{'on' if a.double_quant else 'off'}",
                       "qlora stores every Linear/Conv1D/expert weight of the blocks in 4 bits with one absmax "
                       f"per {a.nf4_block_size} weights (fp32, or 8-bit plus one fp32 constant per "
                       f"{a.double_quant_block_size} absmax with double quantisation); embeddings, output head, "
                       "norms and biases stay 16-bit", QLORA_2023),
            Assumption("adapter_dtype", "fp32",
                       "LoRA A and B, their gradients and optimizer state are fp32 (PEFT upcasts 16-bit "
                       "adapters); lora_dropout 0, so adapters store no extra input copy", PEFT_SOURCE),
            Assumption("full_precision", "mixed precision" if a.compute_bytes == 2 else "fp32",
                       "full fine-tuning: weights and gradients in the weight dtype; with 16-bit weights an "
                       "fp32 master copy (4 bytes per parameter) is counted in the optimizer state "
                       "(2 + 2 + 12 bytes per parameter with AdamW)", ZERO_2020),
            Assumption("optimizer", a.optimizer,
                       "AdamW: fp32 m and v, 8 bytes per trainable parameter" if a.optimizer == "adamw" else
                       f"8-bit AdamW: m and v in 8 bits with one fp32 absmax per {a.adam_8bit_block_size} "
                       "values (bitsandbytes' 32-bit fallback for tensors under 4096 values is ignored)",
                       "--optimizer; " + (ZERO_2020 if a.optimizer == "adamw" else ADAM_8BIT_2022)),
            Assumption("grad_checkpointing", ckpt,
                       "on: each layer's input (s*b*h) is kept and one layer's activations are alive during "
                       "its recomputation; off: every layer's activations are kept",
                       f"--grad-checkpointing; {KORTHIKANTI_2022}"),
            Assumption("activations", scores,
                       "per layer, s*b*h*(34 + 5*a*s/h) bytes (16-bit) rewritten term by term: q and o widths "
                       "from heads*head_dim, k and v widths from kv heads, the MLP from its intermediate size "
                       "(gated: gate, up, act(gate) and product kept; experts: top-k experts per token plus "
                       "router logits), dropout masks only where the config has dropout, both norms' inputs, "
                       "and LoRA's x*A (s*b*r per adapted matrix); plus the logits, s*b*vocab in fp32. Not "
                       "counted: embeddings output, 16-bit logits and the loss buffers, rotary tables, "
                       "frozen-weight savings in autograd, dequantised weights of QLoRA, temporary "
                       "kernel workspace", KORTHIKANTI_2022),
            Assumption("gpu_fit", ", ".join(f"{size} GiB" for size in a.gpu_sizes_gib),
                       "a row fits a GPU when its total is at most the GPU's memory; the CUDA context "
                       "(~0.5 GiB), allocator fragmentation and other processes are not counted: leave headroom",
                       "1 GiB = 2^30 bytes"),
        )


@dataclass(frozen=True)
class MemoryRow:
    """Training memory of one method (full, lora, qlora) at one scenario and rank, per component."""

    method: str
    scenario: str  # "all_parameters" for full fine-tuning
    rank: int | None  # None for full fine-tuning
    weight_bytes: int  # every weight on the GPU: frozen base (with quantisation constants) + trainable
    trainable_params: int
    gradient_bytes: int
    optimizer_bytes: int  # optimizer state, with the fp32 master weights of mixed precision
    activation_bytes: int
    total_bytes: int
    frozen_weight_bytes: int
    trainable_weight_bytes: int
    quantisation_bytes: int  # the quantisation constants inside frozen_weight_bytes
    fits_gib: tuple[int, ...]  # the GPU sizes (GiB) the total fits in
    headline: bool = False  # the chosen scenario and rank (and full fine-tuning)

    @property
    def total_gb(self) -> float:
        """The total in GB (1e9 bytes), two decimals."""
        return round(self.total_bytes / 1e9, 2)

    @property
    def total_gib(self) -> float:
        return round(self.total_bytes / GIB, 2)

    @property
    def components(self) -> tuple[tuple[str, int], ...]:
        """The stacked components, in drawing order: label and bytes."""
        return (
            ("frozen weights", self.frozen_weight_bytes),
            ("trainable weights", self.trainable_weight_bytes),
            ("gradients", self.gradient_bytes),
            ("optimizer state", self.optimizer_bytes),
            ("activations", self.activation_bytes),
        )

    @property
    def label(self) -> str:
        """full / lora all_linear r=16, for tables and charts."""
        return self.method if self.rank is None else f"{self.method} {self.scenario} r={self.rank}"

    @property
    def fits_label(self) -> str:
        return ", ".join(f"{size} GiB" for size in self.fits_gib) or "none of the sizes"

    def fits(self, gib: int) -> bool:
        """Whether the total fits a GPU of this many GiB."""
        return self.total_bytes <= gib * GIB


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
    methods: tuple[str, ...] = ("lora",)
    explanation: tuple[CountLine, ...] = ()

    @property
    def all_confirmed(self) -> bool:
        return all(cell.status != MISMATCH for cell in self.cells)

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
