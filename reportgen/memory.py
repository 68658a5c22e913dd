"""Memory: training memory of full fine-tuning, LoRA and QLoRA, per component, from the counted model.

Pure arithmetic over the data model (module rows, counted cells) and a few
config dimensions; every constant is an assumption stated in
:class:`reportgen.data.MemoryAssumptions`, which the report prints beside the
numbers. Sizes are bytes; an "element" is one value in the compute dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .analyse import Analysis
from .peft_count import Counted
from .formatting import GIB
from .data import Cell, Dimensions, MemoryAssumptions, MemoryRow, ModelInfo, ModuleRow
from .errors import ReportgenError

FULL_SCENARIO = "all_parameters"
FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
FP32 = 4
INT8_BYTES = 1
NF4_BITS = 4
ADAM_STATES = 2  # m and v
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
        return kept * 2 + data_bytes + constants, constants
    if a.base_dtype == "int8":
        data_bytes, constants = int8_bytes(rows)
        return kept * 2 + data_bytes + constants, constants
    return info.total_params * FLOAT_BYTES[a.base_dtype], 0


def full_weight_bytes_per_param(a: MemoryAssumptions) -> int:
    """Full fine-tuning trains float weights: the base dtype, or 16-bit when int8 is asked for."""
    return FLOAT_BYTES.get(a.base_dtype, 2)


# --- optimizer ---------------------------------------------------------------------------------------


def optimizer_state_bytes(params: int, a: MemoryAssumptions, master_weights: bool) -> int:
    """AdamW's m and v (fp32 or block-wise 8-bit) plus fp32 master weights under mixed precision."""
    if a.optimizer == "adamw":
        states = ADAM_STATES * FP32 * params
    elif a.optimizer == "adamw-8bit":
        blocks = math.ceil(params / a.adam_8bit_block_size)
        states = ADAM_STATES * (params * INT8_BYTES + blocks * FP32)
    else:
        raise ReportgenError(f"unknown optimizer {a.optimizer!r} (choose adamw or adamw-8bit)")
    return states + (params * FP32 if master_weights else 0)


# --- activations -------------------------------------------------------------------------------------


def attention_layer_bytes(shape: MemoryShape, a: MemoryAssumptions, element: int) -> int:
    """One attention block's stored activations, Korthikanti et al.'s 11sbh + 5as^2b rewritten for GQA."""
    s, b, h = a.seq_len, a.batch_size, shape.hidden
    tokens = s * b
    # norm input, q/k/v input, q and k (for q k^T), v (for scores x v), o_proj input
    elements = tokens * (h + h + shape.q_width + shape.kv_width + shape.kv_width + shape.q_width)
    other = tokens * h if shape.dropout else 0  # dropout mask after o_proj, one byte per value
    if a.attention_scores_stored:
        elements += 2 * shape.heads * s * s * b  # softmax output, and its dropout output fed to x v
        other += shape.heads * s * s * b if shape.dropout else 0  # the attention dropout mask
    else:
        elements += shape.q_width * tokens  # the attention output kept by the fused kernel
        other += shape.heads * tokens * FP32  # its fp32 logsumexp per head and token
    return elements * element + other


def mlp_layer_bytes(shape: MemoryShape, a: MemoryAssumptions, element: int) -> int:
    """One MLP block's stored activations: Korthikanti et al.'s 19sbh for the model's own MLP."""
    tokens = a.seq_len * a.batch_size
    h, i = shape.hidden, shape.intermediate
    # gated: gate out, up out, act(gate), act(gate) * up; plain: fc1 out (act input), act out
    per_token_inner = 4 * i if shape.gated_mlp else 2 * i
    if shape.experts > 1:
        # norm input, router input, router logits; each of the top-k experts gets its own copy of the input
        elements = tokens * (2 * h + shape.experts + shape.experts_per_token * (h + per_token_inner))
    else:
        elements = tokens * (2 * h + per_token_inner)  # norm input, fc1/gate/up input, inner activations
    masks = tokens * h if shape.dropout else 0
    return elements * element + masks


def lora_layer_bytes(chosen: tuple[ModuleRow, ...], rank: int, shape: MemoryShape, a: MemoryAssumptions) -> int:
    """LoRA's own stored activation per layer: x A (s*b*r) of every adapted matrix, in fp32 (adapter dtype)."""
    tokens = a.seq_len * a.batch_size
    per_token = sum(rank * (shape.experts_per_token if row.kind == "experts" else 1) for row in chosen)
    return tokens * per_token * FP32


def logits_bytes(shape: MemoryShape, a: MemoryAssumptions) -> int:
    """The logits, s*b*vocab in fp32, as the loss upcasts them."""
    return a.seq_len * a.batch_size * shape.vocab * FP32


def activation_bytes(shape: MemoryShape, a: MemoryAssumptions, element: int, lora_per_layer: int = 0) -> int:
    """Every stored activation of one training step, with or without gradient checkpointing."""
    layer = attention_layer_bytes(shape, a, element) + mlp_layer_bytes(shape, a, element) + lora_per_layer
    if a.grad_checkpointing:
        # Only each layer's input is kept; one layer is recomputed (and alive) at a time.
        stored = shape.layers * a.seq_len * a.batch_size * shape.hidden * element + layer
    else:
        stored = shape.layers * layer
    return stored + logits_bytes(shape, a)


# --- rows ----------------------------------------------------------------------------------------------


def _row(method: str, scenario: str, rank: int | None, trainable: int, frozen: tuple[int, int],
         trainable_bytes: int, gradients: int, optimizer: int, activations: int, a: MemoryAssumptions,
         headline: bool) -> MemoryRow:
    frozen_bytes, constants = frozen
    weights = frozen_bytes + trainable_bytes
    total = weights + gradients + optimizer + activations
    return MemoryRow(
        method=method, scenario=scenario, rank=rank, weight_bytes=weights, trainable_params=trainable,
        gradient_bytes=gradients, optimizer_bytes=optimizer, activation_bytes=activations, total_bytes=total,
        frozen_weight_bytes=frozen_bytes, trainable_weight_bytes=trainable_bytes, quantisation_bytes=constants,
        fits_gib=tuple(size for size in a.gpu_sizes_gib if total <= size * GIB), headline=headline,
    )


def full_row(info: ModelInfo, shape: MemoryShape, a: MemoryAssumptions) -> MemoryRow:
    """Full fine-tuning: every parameter trained."""
    params = info.total_params
    per_param = full_weight_bytes_per_param(a)
    weights = params * per_param
    optimizer = optimizer_state_bytes(params, a, master_weights=per_param < FP32)
    activations = activation_bytes(shape, a, element=per_param)
    return _row("full", FULL_SCENARIO, None, params, (0, 0), weights, weights, optimizer, activations, a, True)


def adapter_row(method: str, cell: Cell, chosen: tuple[ModuleRow, ...], info: ModelInfo,
                rows: tuple[ModuleRow, ...], shape: MemoryShape, a: MemoryAssumptions, headline: bool) -> MemoryRow:
    """LoRA or QLoRA at one counted cell: frozen base, fp32 adapters, their gradients and optimizer state."""
    trainable = cell.peft_trainable if cell.peft_trainable is not None else cell.formula_trainable
    if trainable is None:
        raise ReportgenError(f"cell {cell.scenario} r={cell.rank} has no trainable count")
    element = 2 if method == "qlora" else a.compute_bytes
    adapters = trainable * FP32
    activations = activation_bytes(shape, a, element, lora_layer_bytes(chosen, cell.rank, shape, a))
    return _row(method, cell.scenario, cell.rank, trainable, frozen_weight_bytes(method, info, rows, a), adapters,
                adapters, optimizer_state_bytes(trainable, a, master_weights=False), activations, a, headline)


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
    return tuple(result)


def estimate(analysis: Analysis, counted: Counted, config: Any, assumptions: MemoryAssumptions,
             ranks: tuple[int, ...]) -> tuple[MemoryRow, ...]:
    """The estimate stage: every method's training memory for the counted cells, under the stated assumptions."""
    shape = memory_shape(analysis.info.dimensions, analysis.rows, config)
    return memory_rows(analysis.info, analysis.rows, counted.cells, shape, assumptions, ranks,
                       tuple(plan.rows for plan in counted.plans))
