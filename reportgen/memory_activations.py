"""Activations of one training step: every tensor autograd keeps for the backward pass, and the loss's buffers.

Written op by op from what the pinned transformers (5.23) and PEFT (0.21) keep, and checked against a
measurement of the same forward pass on CPU (:mod:`reportgen.memory_measure`, ``make validate-memory``).
Sizes are bytes per token first (``*_per_token``), then times the tokens of the micro-batch. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .data import MemoryAssumptions, ModuleRow
from .rows import OUTPUT_HEAD

if TYPE_CHECKING:
    from .memory import MemoryShape

FP32 = 4
MASK = 1  # a dropout mask: one bool per value
# The linear layers of a block read four distinct tensors; every module of a group reads the same one.
GROUP_OF_ROLE = {
    "q": "attn_in", "k": "attn_in", "v": "attn_in", "qkv": "attn_in", "q_latent": "attn_in",
    "kv_latent": "attn_in", "o": "o_in", "gate": "mlp_in", "up": "mlp_in", "gate_up": "mlp_in", "down": "down_in",
}
GROUPS = ("attn_in", "o_in", "mlp_in", "down_in")
LOSS_BUFFERS_PER_LOGIT = 2 * FP32  # backward: nll_loss's gradient of the log-probabilities, log_softmax's of the logits


@dataclass(frozen=True)
class Training:
    """What one row trains, as far as the saved activations care: the whole model, or adapters on some rows."""

    full: bool  # every weight trainable: each Linear keeps its input
    element: int  # bytes per activation value (the compute dtype)
    adapter: int  # bytes per value of the adapter weights (PEFT casts each adapter's input to it)
    chosen: tuple[ModuleRow, ...] = ()  # the adapted rows
    rank: int = 0
    quantised: bool = False  # QLoRA under bitsandbytes before 0.43.2: every 4-bit Linear keeps its input
    dropout: bool = False  # lora_dropout > 0: each adapted module keeps its dropped input and the mask
    mask: int = MASK  # bytes per dropout-mask value: a bool on CUDA (fused native_dropout)


@dataclass(frozen=True)
class ActivationTerms:
    """The activation bytes of one training step, by where they come from."""

    layer_inputs: int  # gradient checkpointing: each layer's input, held by the checkpoint
    layer: int  # one (average) layer's saved tensors
    layers_saved: int  # the saved tensors of the layers alive together: all, or the one recomputed
    head: int  # the final norm's, the output head's, and the loss's fp32 log-probabilities
    loss_buffers: int  # transient, in the loss's backward: two fp32 tensors the size of the logits
    shared: int = 0  # one copy for every layer: rotary cos and sin; with checkpointing, eager's causal mask
    held: int = 0  # checkpointing under bitsandbytes before 0.43.2: every layer's 4-bit inputs, on the matmul's context

    @property
    def saved(self) -> int:
        """What autograd keeps for the backward pass (saved tensors, and tensors kept on a function's context)."""
        return self.layer_inputs + self.shared + self.layers_saved + self.head + self.held

    @property
    def total(self) -> int:
        return self.saved + self.loss_buffers


def norm_per_token(shape: MemoryShape, training: Training) -> int:
    """One norm: RMSNorm keeps its fp32 input and 1/rms (and the normalised input when its weight trains)."""
    if shape.rms_norm:
        # x.to(float32) kept by pow and mul; rsqrt(mean(x^2)) per token; x_normed (16-bit) by weight * x_normed.
        return FP32 * shape.hidden + FP32 + (training.element * shape.hidden if training.full else 0)
    return training.element * shape.hidden + 2 * FP32  # LayerNorm: its input, mean and rstd


def _group_width(shape: MemoryShape, group: str) -> int:
    return {"attn_in": shape.hidden, "o_in": shape.q_width, "mlp_in": shape.hidden,
            "down_in": shape.intermediate}[group]


def _group_active(shape: MemoryShape, group: str) -> int:
    """Copies of a group's input per token and layer: the top-k experts' for an MoE's MLP inputs, else one."""
    return shape.experts_per_token if shape.experts > 1 and group in ("mlp_in", "down_in") else 1


def _active(row: ModuleRow, shape: MemoryShape) -> int:
    """Copies of a row's input per token and layer: its top-k experts for fused experts, else one."""
    return shape.experts_per_token if row.kind == "experts" else 1


def _own_copy(training: Training) -> int:
    """Bytes per input value an adapted module keeps of its own: the cast (or dropped) input, and a dropout mask."""
    return training.adapter + (training.mask if training.dropout else 0)


def linear_inputs_per_token(shape: MemoryShape, a: MemoryAssumptions, training: Training) -> int:
    """The inputs the Linear layers of all blocks keep, per token (summed over layers).

    A trainable Linear keeps its input for its weight's gradient, shared by every module that reads the same
    tensor; a frozen one keeps nothing, and so does a 4-bit one (bitsandbytes keeps only the packed weight),
    except under bitsandbytes before 0.43.2, which kept every 4-bit Linear's input. PEFT casts an adapter's
    input to the adapter's dtype, so with fp32 adapters on a 16-bit model each adapted module keeps its own fp32
    copy; with lora_dropout each keeps its own dropped copy and the dropout's mask; LoRA's x A is kept for B's
    gradient.
    """
    layers = shape.layers
    chosen = [row for row in training.chosen if row.part != OUTPUT_HEAD]
    total = 0
    own = training.adapter != training.element or training.dropout  # each adapted module keeps its own copy
    for group in GROUPS:
        adapted = [row for row in chosen if GROUP_OF_ROLE.get(row.role) == group]
        width = _group_width(shape, group)
        active = _group_active(shape, group)
        shared = training.full or training.quantised or (adapted and not own)
        if shared and not (group == "o_in" and not a.attention_scores_stored):
            total += layers * active * training.element * width  # (SDPA's output is o_proj's input: kept once)
        if own:
            total += sum(row.layers * _active(row, shape) * _own_copy(training) * row.shape[1] for row in adapted)
    others = [row for row in chosen if row.role not in GROUP_OF_ROLE]  # routers and the like: their own input
    total += sum(row.layers * _active(row, shape) * _own_copy(training) * row.shape[1] for row in others)
    total += sum(row.layers * _active(row, shape) * training.adapter * training.rank for row in chosen)  # x A
    return total


def quantised_inputs_per_token(shape: MemoryShape, training: Training) -> int:
    """Every 4-bit Linear's input, each tensor once, summed over layers: what bitsandbytes before 0.43.2 kept on
    its matmul's context. Under checkpointing nothing else keeps them (not even SDPA's output, o_proj's input)."""
    return sum(shape.layers * _group_active(shape, group) * training.element * _group_width(shape, group)
               for group in GROUPS)


def attention_per_token(shape: MemoryShape, a: MemoryAssumptions, element: int) -> int:
    """One attention block's own saved tensors per token (without the Linear inputs)."""
    if not a.attention_scores_stored:
        # SDPA: q, k, v (kv heads: enable_gqa) and its output; an fp32 logsumexp per head.
        kept = element * (2 * shape.q_width + 2 * shape.kv_width) + FP32 * shape.heads
    else:
        # eager: q, k and v repeated to every head; the fp32 softmax and its 16-bit copy fed to x v.
        kept = element * 3 * shape.q_width + shape.heads * a.seq_len * (FP32 + element)
        if shape.dropout:
            kept += shape.heads * a.seq_len * (MASK + element)  # attention dropout: its mask and its output
    return kept + (MASK * shape.hidden if shape.dropout else 0)  # the residual dropout's mask


def mlp_per_token(shape: MemoryShape, element: int) -> int:
    """One MLP block's own saved tensors per token (without the Linear inputs)."""
    # gated: gate's output (the activation's input), act(gate) and up's output (the product's inputs);
    # plain: fc1's output (the activation's input).
    inner = element * shape.intermediate * (3 if shape.gated_mlp else 1)
    if shape.experts > 1:
        inner = shape.experts_per_token * inner + element * shape.experts  # top-k experts, router logits
    return inner + (MASK * shape.hidden if shape.dropout else 0)


def head_per_token(shape: MemoryShape, training: Training) -> int:
    """The final norm, the head's input (when the head trains) and the loss's fp32 log-probabilities."""
    head_rows = [row for row in training.chosen if row.part == OUTPUT_HEAD]
    head_input = training.element * shape.hidden if training.full else 0
    if head_rows and training.adapter == training.element and not training.dropout:
        head_input = training.element * shape.hidden
    own = training.adapter != training.element or training.dropout
    adapters = sum(_own_copy(training) * row.shape[1] * own + training.adapter * training.rank for row in head_rows)
    # ForCausalLMLoss: logits.float() then cross_entropy; log_softmax keeps its fp32 output for the backward.
    return norm_per_token(shape, training) + head_input + adapters + FP32 * shape.vocab


def shared_bytes(shape: MemoryShape, a: MemoryAssumptions, element: int) -> int:
    """Tensors every layer reads, kept once: rotary cos and sin (kept by q*cos, k*sin); with checkpointing the
    checkpoint also holds eager attention's 4-D causal mask (SDPA's causal kernels take no mask)."""
    tokens = a.seq_len * a.batch_size
    rotary = 2 * tokens * shape.dims.head_dim * element if shape.rotary else 0
    mask = a.batch_size * a.seq_len * a.seq_len * element if a.grad_checkpointing and a.attention_scores_stored else 0
    return rotary + mask


def activation_terms(shape: MemoryShape, a: MemoryAssumptions, training: Training) -> ActivationTerms:
    """Every activation of one training step, with or without gradient checkpointing."""
    tokens = a.seq_len * a.batch_size
    layers = max(shape.layers, 1)
    per_layer = 2 * norm_per_token(shape, training) + attention_per_token(shape, a, training.element) \
        + mlp_per_token(shape, training.element)
    all_layers = shape.layers * per_layer + linear_inputs_per_token(shape, a, training)
    layer = tokens * all_layers // layers
    head = tokens * head_per_token(shape, training)
    loss_buffers = tokens * LOSS_BUFFERS_PER_LOGIT * shape.vocab
    shared = shared_bytes(shape, a, training.element)
    if a.grad_checkpointing:
        # Only each layer's input is kept; one layer is recomputed (and alive) at a time. bitsandbytes before
        # 0.43.2 kept each 4-bit Linear's input on its context, which the checkpoint cannot drop: every layer's.
        inputs = tokens * shape.layers * training.element * shape.hidden
        held = tokens * quantised_inputs_per_token(shape, training) if training.quantised else 0
        return ActivationTerms(inputs, layer, layer, head, loss_buffers, shared, held)
    return ActivationTerms(0, layer, tokens * all_layers, head, loss_buffers, shared)
