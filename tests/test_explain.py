"""The explanation table against published figures and hand counts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec, catalog_ids
from reportgen.variants import BUILTIN_VARIANTS
from tests.families import study_report
from tests.test_published_totals import CHECKPOINT_TOTALS, PUBLISHED_TOTALS


def lines(model_id: str) -> dict[str, int]:
    report = analyse_spec(ModelSpec(text=model_id, origin="test"), "test",
                          Study(ranks=(8,), merge_check=False, scenarios=()))
    return {line.label: line.count for line in report.explanation}


@pytest.mark.parametrize("model_id", ["openai-community/gpt2", "tiiuae/falcon-7b", "meta-llama/Llama-3.2-1B-Instruct"])
def test_checkpoint_total_and_unique_count_match_published(model_id: str) -> None:
    counts = lines(model_id)
    # GPT-2's checkpoint adds 12 causal masks, Falcon's its lm_head stored once more: both published.
    assert counts["checkpoint tensor total"] == CHECKPOINT_TOTALS[model_id]
    assert counts["parameters, tied weights counted once"] == PUBLISHED_TOTALS[model_id]
    assert counts["transformers num_parameters()"] == PUBLISHED_TOTALS[model_id]


def test_reference_all_params_is_the_walkthroughs() -> None:
    # DESIGN.md: the walk-through's PEFT step prints all params: 1,239,222,272 on Llama 3.2 1B.
    assert lines("meta-llama/Llama-3.2-1B-Instruct")["PEFT all params (reference LoraConfig)"] == 1_239_222_272


def test_bnb_4bit_count_halves_the_quantized_weights(write_config: Callable[..., Path]) -> None:
    # tiny llama (tied): embed 128x64 kept; per layer q 64x64, k 32x64, v 32x64, o 64x64, gate/up 96x64,
    # down 64x96 packed to half; norms 64 x (2 per layer + 1 final) kept; lm_head tied, not converted.
    report = study_report(write_config(), (BUILTIN_VARIANTS["lora"],), ranks=(8,))
    linear = 64 * 64 + 32 * 64 + 32 * 64 + 64 * 64 + 3 * 96 * 64
    expected = 128 * 64 + 2 * (linear // 2 + 2 * 64) + 64
    counts = {line.label: line.count for line in report.explanation}
    assert counts["bitsandbytes 4-bit, summing numel()"] == expected
    assert all(line.why for line in report.explanation)


@pytest.mark.slow
@pytest.mark.parametrize("model_id", catalog_ids())
def test_every_bundled_checkpoint_total_is_published(model_id: str) -> None:
    assert lines(model_id)["checkpoint tensor total"] == CHECKPOINT_TOTALS[model_id]


def test_the_terminal_table_reads_from_the_left() -> None:
    from reportgen.render.terminal import render

    report = analyse_spec(ModelSpec(text="openai-community/gpt2", origin="test"), "test",
                          Study(ranks=(8,), merge_check=False))
    printed = render(report)
    section = printed.split("Why the counts differ\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[0].split() == ["count", "parameters", "difference", "why"]
    # One row per way of counting, label first and reason last, both whole and left-aligned; no trailing blanks.
    assert len(section) == 1 + len(report.explanation)
    starts = set()
    for row, line in zip(section[1:], report.explanation):
        assert row.startswith(line.label) and row.endswith(line.why)
        assert f"{line.count:,}" in row
        starts.add(row.index(line.why))
    assert len(starts) == 1
    assert all(row == row.rstrip() for row in section)
