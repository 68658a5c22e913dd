"""Memory: training memory of full fine-tuning, LoRA and QLoRA, per component, from the counted model.

Pure arithmetic over the data model (module rows, counted cells) and a few
config dimensions; every constant is an assumption stated in
:class:`reportgen.data.MemoryAssumptions`, which the report prints beside the
numbers. Sizes are bytes; an "element" is one value in the compute dtype.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .analyse import Analysis
from .peft_count import Counted
from .formatting import GIB
from .data import Cell, Dimensions, MemoryAssumptions, MemoryRow, ModelInfo, ModuleRow
from .errors import ReportgenError
from .memory_activations import ActivationTerms, Training, activation_terms

FULL_SCENARIO = "all_parameters"
FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4
INT8_BYTES = 1
NF4_BITS = 4
ADAM_STATES = 2  # m and v
ROTARY_NAMES = ("rope_parameters", "rope_theta", "rotary_dim", "rotary_pct", "rotary_emb_base")
TOP_K_NAMES = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "top_k", "num_selected_experts")
DROPOUT_NAMES = (
    "attention_dropout", "attn_pdrop", "resid_pdrop", "hidden_dropout", "attention_probs_dropout_prob",
    "hidden_dropout_prob", "dropout",
)


@dataclass(frozen=True)
class MemoryShape:
    """The shape of the activation formula: the model's widths, and what the module table and config add."""

    dims: Dimensions
    gated_mlp: bool
    experts_per_token: int
    dropout: bool
    rms_norm: bool = True  # RMSNorm (upcast to fp32, as transformers' implementations do) or LayerNorm
    rotary: bool = True  # rotary position embeddings (cos and sin tables read by every layer)

    @property
    def layers(self) -> int:
        return self.dims.num_layers

    @property
    def hidden(self) -> int:
        return self.dims.hidden_size

    @property
    def heads(self) -> int:
        return self.dims.num_attention_heads

    @property
    def q_width(self) -> int:
        """heads * head_dim."""
        return self.dims.num_attention_heads * self.dims.head_dim

    @property
    def kv_width(self) -> int:
        """kv heads * head_dim."""
        return self.dims.num_key_value_heads * self.dims.head_dim

    @property
    def intermediate(self) -> int:
        """The MLP width (per expert for mixtures of experts)."""
        return self.dims.intermediate_size

    @property
    def vocab(self) -> int:
        return self.dims.vocab_size

    @property
    def experts(self) -> int:
        return self.dims.num_experts


def experts_per_token(config: Any) -> int:
    """Active experts per token (top-k) of a mixture-of-experts config, 1 for a dense one."""
    for name in TOP_K_NAMES:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1


def has_dropout(config: Any) -> bool:
    """Whether any dropout probability of the config is above zero (then masks are stored)."""
    return any(
        isinstance(getattr(config, name, None), (int, float)) and getattr(config, name) > 0 for name in DROPOUT_NAMES
    )


def memory_shape(dims: Dimensions, rows: tuple[ModuleRow, ...], config: Any) -> MemoryShape:
    """The shape of the activation formula for one model."""
    return MemoryShape(
        dims=dims,
        gated_mlp=any(row.role in ("gate", "gate_up") for row in rows),
        experts_per_token=experts_per_token(config) if dims.num_experts > 1 else 1,
        dropout=has_dropout(config),
        rms_norm=getattr(config, "rms_norm_eps", None) is not None,
        rotary=any(getattr(config, name, None) is not None for name in ROTARY_NAMES),
    )


# --- weights -----------------------------------------------------------------------------------------


def quantised_params(rows: tuple[ModuleRow, ...]) -> int:
    """Weights a quantising loader converts: every Linear/Conv1D/expert weight of the blocks (biases excluded)."""
    return sum(row.params for row in rows)


def _matrices(row: ModuleRow) -> int:
    return row.layers * row.experts


def nf4_bytes(rows: tuple[ModuleRow, ...], a: MemoryAssumptions) -> tuple[int, int]:
    """NF4 data bytes and quantisation-constant bytes of the quantised weights (QLoRA sec. 3)."""
    data_bytes = 0
    constants = 0
    for row in rows:
        per_matrix = row.shape[0] * row.shape[1]
        blocks = math.ceil(per_matrix / a.nf4_block_size)
        data_bytes += _matrices(row) * math.ceil(per_matrix * NF4_BITS / 8)
        if a.double_quant:
            # 8-bit absmax per block, plus one fp32 constant per double_quant_block_size absmax values.
            per_matrix_constants = blocks * INT8_BYTES + math.ceil(blocks / a.double_quant_block_size) * FP32
        else:
            per_matrix_constants = blocks * FP32
        constants += _matrices(row) * per_matrix_constants
    return data_bytes, constants


def int8_bytes(rows: tuple[ModuleRow, ...]) -> tuple[int, int]:
    """LLM.int8 data bytes and the fp32 scale of every output row."""
    data_bytes = sum(row.params * INT8_BYTES for row in rows)
    scales = sum(_matrices(row) * row.shape[0] * FP32 for row in rows)
    return data_bytes, scales


def frozen_weight_bytes(
    method: str, info: ModelInfo, rows: tuple[ModuleRow, ...], a: MemoryAssumptions
) -> tuple[int, int]:
    """The frozen base weights of lora or qlora, and the quantisation constants inside them."""
    kept = info.total_params - quantised_params(rows)  # embeddings, head, norms, biases: not quantised
    if method == "qlora":
        data_bytes, constants = nf4_bytes(rows, a)
        return kept * (FP32 if a.prepare_kbit else 2) + data_bytes + constants, constants
    if a.base_dtype == "int8":
        data_bytes, constants = int8_bytes(rows)
        return kept * 2 + data_bytes + constants, constants
    return info.total_params * FLOAT_BYTES[a.base_dtype], 0


def full_weight_bytes_per_param(a: MemoryAssumptions) -> int:
    """Full fine-tuning trains float weights: the base dtype, or 16-bit when int8 is asked for."""
    return FLOAT_BYTES.get(a.base_dtype, 2)


# --- optimizer ---------------------------------------------------------------------------------------


def optimizer_state_bytes(params: int, a: MemoryAssumptions, state_bytes: int, master_weights: bool) -> int:
    """AdamW's m and v (``state_bytes`` each, or block-wise 8-bit) plus fp32 master weights under mixed precision."""
    if a.optimizer in ("adamw", "paged-adamw"):
        states = ADAM_STATES * state_bytes * params
    elif a.optimizer in ("adamw-8bit", "paged-adamw-8bit"):
        blocks = math.ceil(params / a.adam_8bit_block_size)
        states = ADAM_STATES * (params * INT8_BYTES + blocks * FP32)
    else:
        raise ReportgenError(f"unknown optimizer {a.optimizer!r} (choose one of adamw, adamw-8bit, paged-adamw, "
                             "paged-adamw-8bit)")
    return states + (params * FP32 if master_weights else 0)


def state_bytes(a: MemoryAssumptions, param_bytes: int) -> int:
    """Bytes of one AdamW state value: torch's AdamW allocates them like the parameter; bitsandbytes' 32-bit ones fp32."""
    return FP32 if a.optimizer == "paged-adamw" else param_bytes


def paged_bytes(optimizer: int, master: int, a: MemoryAssumptions) -> int:
    """The part of the optimizer state a paged optimizer keeps outside PyTorch's allocator (not the master copy)."""
    return optimizer - master if a.paged else 0


# --- activations -------------------------------------------------------------------------------------


def activations(shape: MemoryShape, a: MemoryAssumptions, training: Training) -> ActivationTerms:
    """Every stored activation of one training step and the loss's buffers (reportgen.memory_activations)."""
    return activation_terms(shape, a, training)


# --- rows ----------------------------------------------------------------------------------------------


def _row(method: str, scenario: str, rank: int | None, trainable: int, frozen: tuple[int, int],
         trainable_bytes: int, gradients: int, optimizer: tuple[int, int], acts: ActivationTerms,
         a: MemoryAssumptions, headline: bool) -> MemoryRow:
    frozen_bytes, constants = frozen
    optimizer_bytes, paged = optimizer
    weights = frozen_bytes + trainable_bytes
    total = weights + gradients + optimizer_bytes + acts.total
    return MemoryRow(
        method=method, scenario=scenario, rank=rank, weight_bytes=weights, trainable_params=trainable,
        gradient_bytes=gradients, optimizer_bytes=optimizer_bytes, activation_bytes=acts.total, total_bytes=total,
        frozen_weight_bytes=frozen_bytes, trainable_weight_bytes=trainable_bytes, quantisation_bytes=constants,
        fits_gib=tuple(size for size in a.gpu_sizes_gib if total + a.headroom_bytes <= size * GIB),
        headline=headline, loss_buffer_bytes=acts.loss_buffers, paged_bytes=paged, headroom_bytes=a.headroom_bytes,
    )


def full_row(info: ModelInfo, shape: MemoryShape, a: MemoryAssumptions) -> MemoryRow:
    """Full fine-tuning: every parameter trained (mixed precision with an fp32 master copy, or all bf16)."""
    params = info.total_params
    per_param = 2 if a.full_precision == "bf16" else full_weight_bytes_per_param(a)
    weights = params * per_param
    master = params * FP32 if per_param < FP32 and a.full_precision == "mixed" else 0
    optimizer = optimizer_state_bytes(params, a, state_bytes(a, FP32 if master else per_param), master > 0)
    training = Training(full=True, element=per_param, adapter=per_param)
    return _row("full", FULL_SCENARIO, None, params, (0, 0), weights, weights,
                (optimizer, paged_bytes(optimizer, master, a)), activations(shape, a, training), a, True)


def adapter_bytes(method: str, a: MemoryAssumptions) -> tuple[int, int]:
    """Bytes per activation value (the compute dtype) and per adapter value (fp32, or the base dtype).

    QLoRA's hidden states are 16-bit, or fp32 once prepare_model_for_kbit_training has upcast the embeddings
    and norms (each 4-bit matmul hands its output back in its input's dtype).
    """
    element = (FP32 if a.prepare_kbit else 2) if method == "qlora" else a.compute_bytes
    return element, (FP32 if a.adapter_dtype == "fp32" else element)


def adapter_row(method: str, cell: Cell, chosen: tuple[ModuleRow, ...], info: ModelInfo,
                rows: tuple[ModuleRow, ...], shape: MemoryShape, a: MemoryAssumptions, headline: bool) -> MemoryRow:
    """LoRA or QLoRA at one counted cell: frozen base, the adapters, their gradients and optimizer state."""
    trainable = cell.peft_trainable if cell.peft_trainable is not None else cell.formula_trainable
    if trainable is None:
        raise ReportgenError(f"cell {cell.scenario} r={cell.rank} has no trainable count")
    element, per_param = adapter_bytes(method, a)
    adapters = trainable * per_param
    optimizer = optimizer_state_bytes(trainable, a, state_bytes(a, per_param), master_weights=False)
    training = Training(full=False, element=element, adapter=per_param, chosen=chosen, rank=cell.rank,
                        quantised=method == "qlora" and a.bnb_keeps_inputs, dropout=a.lora_dropout > 0)
    return _row(method, cell.scenario, cell.rank, trainable, frozen_weight_bytes(method, info, rows, a), adapters,
                adapters, (optimizer, paged_bytes(optimizer, 0, a)), activations(shape, a, training), a, headline)


def headline_rank(a: MemoryAssumptions, ranks: tuple[int, ...]) -> int | None:
    """The rank of the headline rows: the one asked for, else the study's largest."""
    return a.rank if a.rank is not None else (max(ranks) if ranks else None)


def memory_rows(info: ModelInfo, rows: tuple[ModuleRow, ...], cells: tuple[Cell, ...], shape: MemoryShape,
                a: MemoryAssumptions, ranks: tuple[int, ...],
                adapted: Sequence[tuple[ModuleRow, ...]]) -> tuple[MemoryRow, ...]:
    """Full fine-tuning, then lora and qlora at every counted (scenario, rank) cell.

    ``adapted`` is each cell's adapted rows, in the order of cells: its plan's (the count stage's).
    """
    rank = headline_rank(a, ranks)
    result = [full_row(info, shape, a)]
    for method in ("lora", "qlora"):
        for cell, chosen in zip(cells, adapted):
            if cell.method != "lora" or (cell.peft_trainable is None and cell.formula_trainable is None):
                continue
            headline = (cell.scenario, cell.rank) == (a.scenario, rank)
            result.append(adapter_row(method, cell, chosen, info, rows, shape, a, headline))
    lora = [cell.scenario for cell in cells if cell.method == "lora"]
    if lora and a.scenario not in lora:  # said in the report's warnings, not left as a table without its rows
        warnings.warn(f"--memory-scenario {a.scenario!r} is not a scenario of this model (its scenarios: "
                      f"{', '.join(dict.fromkeys(lora))}): the memory table has no lora or qlora headline row",
                      stacklevel=1)
    return tuple(result)


def estimate(analysis: Analysis, counted: Counted, config: Any, assumptions: MemoryAssumptions,
             ranks: tuple[int, ...]) -> tuple[MemoryRow, ...]:
    """The estimate stage: every method's training memory for the counted cells, under the stated assumptions."""
    shape = memory_shape(analysis.info.dimensions, analysis.rows, config)
    return memory_rows(analysis.info, analysis.rows, counted.cells, shape, assumptions, ranks,
                       tuple(plan.rows for plan in counted.plans))
