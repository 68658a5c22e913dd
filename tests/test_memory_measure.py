"""The estimate's activation term against a measurement on CPU (issue 16): every saved tensor, counted by autograd.

The measured figures come from torch itself (saved-tensor hooks over one forward pass of a real, shrunk
SmolLM2); the estimate from reportgen's formulas for the same model and settings. Each within 10 %.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch

from reportgen.memory_measure import (
    CASES, Case, Measurement, bitsandbytes_before_0_43_2, compare, held_on_contexts, shrunk_model,
)
from reportgen.memory_validation import CPU_BAND_PERCENT


@functools.lru_cache(maxsize=None)
def measured(case: Case) -> Measurement:
    return compare(case)


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_activation_estimate_within_the_band_of_the_measurement(case: Case) -> None:
    result = measured(case)
    assert result.measured > 0
    for part, bytes_measured, bytes_estimated in result.parts:
        if bytes_measured == 0:  # bitsandbytes' contexts: nothing held, nothing estimated
            assert bytes_estimated == 0, part
            continue
        assert abs(bytes_estimated / bytes_measured - 1) * 100 <= CPU_BAND_PERCENT, (part, bytes_measured,
                                                                                  bytes_estimated)
    assert abs(result.ratio - 1) * 100 <= CPU_BAND_PERCENT


def test_the_cases_cover_what_the_issue_asks() -> None:
    # LoRA and full fine-tuning, checkpointing on and off, eager and SDPA, two sequence lengths.
    assert {(c.method, c.attention, c.grad_checkpointing) for c in CASES} >= {
        (method, attention, ckpt) for method in ("lora", "full") for attention in ("sdpa", "eager")
        for ckpt in (True, False)}
    assert len({c.seq_len for c in CASES}) == 2


def test_the_qlora_model_is_quantised() -> None:
    # 4 layers of q, k, v, o, gate, up and down: 28 bitsandbytes 4-bit Linears under PEFT's LoRA layers.
    import bitsandbytes

    model = shrunk_model(Case("qlora", "sdpa", 128, False))
    linears = [module for module in model.modules() if isinstance(module, bitsandbytes.nn.Linear4bit)]
    assert len(linears) == 4 * 7
    assert all(linear.weight.dtype == torch.uint8 for linear in linears)


def test_qlora_keeps_what_lora_keeps() -> None:
    # Measured facts, not the estimate: the 4-bit model (bitsandbytes 0.50 on CPU) keeps the same saved tensors
    # as the bf16 one, and its 4-bit matmuls hold nothing but their packed weights on their contexts.
    lora = measured(Case("lora", "sdpa", 128, False))
    qlora = measured(Case("qlora", "sdpa", 128, False))
    assert qlora.parts[0][1] == lora.parts[0][1]
    assert qlora.parts[1][:2] == ("held on bitsandbytes' contexts", 0)


def test_the_context_walk_finds_every_input_the_old_bitsandbytes_kept() -> None:
    # The control on the real model: with bitsandbytes' pre-0.43.2 matmul emulated, every layer's 4-bit inputs
    # are found on the contexts, each storage once, the ones the hooks saw already left out. By hand, 128 tokens
    # of bf16: per layer q/k/v's input (576 wide), gate/up's (576) and down's (1536); o_proj's is SDPA's saved
    # output, seen by the hooks. The first layer's q/k/v read the embeddings, which need no gradient: no
    # matmul context there.
    held = measured(Case("qlora", "sdpa", 128, False, bnb_keeps_inputs=True)).parts[1]
    assert held[:2] == ("held on bitsandbytes' contexts", 128 * 2 * (4 * (576 + 576 + 1536) - 576))
    # With checkpointing the forward's contexts keep all four inputs of every layer (nothing keeps SDPA's output
    # there), and the recomputed first layer's contexts three more (its input needs a gradient: checkpointing
    # makes the embeddings' output require one).
    held = measured(Case("qlora", "sdpa", 128, True, bnb_keeps_inputs=True)).parts[3]
    assert held[:2] == ("held on bitsandbytes' contexts", 128 * 2 * (4 * (576 + 576 + 576 + 1536) + 576 + 576 + 1536))


class _KeepsItsInput(torch.autograd.Function):
    """A matmul that keeps its input on its context, as bitsandbytes' MatMul4Bit did before 0.43.2."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.tensors = (x, weight)
        return x @ weight.t()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad @ ctx.tensors[1], None


def test_the_context_walk_finds_a_kept_input() -> None:
    # The control for the check above: an input kept on a context is found (4 x 8 fp32 values = 128 bytes),
    # the module's own weight is not counted.
    layer = torch.nn.Linear(8, 3, bias=False)
    x = torch.randn(4, 8, requires_grad=True)
    output = _KeepsItsInput.apply(x * 1.0, layer.weight).sum()
    assert held_on_contexts(output, layer) == 4 * 8 * 4


def test_the_old_bitsandbytes_inputs_outlive_the_backward() -> None:
    # What benchmarks/MEMORY.md's note on litgpt's QLoRA runs rests on: the backward frees the saved tensors, not
    # what a function keeps on its context, so while the step's loss is referenced (litgpt rebinds it only after
    # the next forward) every 4-bit input the old bitsandbytes kept stays alive.
    case = Case("qlora", "sdpa", 64, False, bnb_keeps_inputs=True)
    model = shrunk_model(case)
    ids = torch.randint(0, 1000, (1, 64), generator=torch.Generator().manual_seed(0))
    with bitsandbytes_before_0_43_2(True):
        loss = model(input_ids=ids, labels=ids).loss
    before = held_on_contexts(loss, model)
    loss.backward()
    assert before > 0 and held_on_contexts(loss, model) == before
    with bitsandbytes_before_0_43_2(False):  # today's: nothing to outlive it
        loss = model(input_ids=ids, labels=ids).loss
    assert held_on_contexts(loss, model) == 0


def test_checkpointing_keeps_far_less_than_every_layer() -> None:
    # A measured fact, not the estimate: with checkpointing the forward keeps the layers' inputs and one layer.
    off = measured(Case("full", "sdpa", 128, False))
    on = measured(Case("full", "sdpa", 128, True))
    assert on.measured < off.measured
    (_, inputs, _), (_, one_layer, _) = on.parts[1], on.parts[2]
    assert inputs < one_layer  # a layer's input (s*h, 16-bit) is far smaller than what the layer keeps


def test_eager_keeps_the_scores_sdpa_does_not() -> None:
    # s x s per head: doubling the sequence grows eager's saved bytes faster than twice; SDPA's about twice.
    eager = [measured(Case("full", "eager", s, False)).measured for s in (64, 128)]
    sdpa = [measured(Case("full", "sdpa", s, False)).measured for s in (64, 128)]
    assert eager[1] / eager[0] > sdpa[1] / sdpa[0]
    assert eager[0] > sdpa[0]
