"""The estimate's activation term against a measurement on CPU (issue 16): every saved tensor, counted by autograd.

The measured figures come from torch itself (saved-tensor hooks over one forward pass of a real, shrunk
SmolLM2); the estimate from reportgen's formulas for the same model and settings. Each within 10 %.
"""

from __future__ import annotations

import functools

import pytest

from reportgen.memory_measure import CASES, Case, Measurement, compare
from reportgen.memory_validation import CPU_BAND_PERCENT


@functools.lru_cache(maxsize=None)
def measured(case: Case) -> Measurement:
    return compare(case)


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_activation_estimate_within_the_band_of_the_measurement(case: Case) -> None:
    result = measured(case)
    assert result.measured > 0
    for part, bytes_measured, bytes_estimated in result.parts:
        assert abs(bytes_estimated / bytes_measured - 1) * 100 <= CPU_BAND_PERCENT, (part, bytes_measured,
                                                                                  bytes_estimated)
    assert abs(result.ratio - 1) * 100 <= CPU_BAND_PERCENT


def test_the_cases_cover_what_the_issue_asks() -> None:
    # LoRA and full fine-tuning, checkpointing on and off, eager and SDPA, two sequence lengths.
    assert {(c.method, c.attention, c.grad_checkpointing) for c in CASES} >= {
        (method, attention, ckpt) for method in ("lora", "full") for attention in ("sdpa", "eager")
        for ckpt in (True, False)}
    assert len({c.seq_len for c in CASES}) == 2


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
