"""Every figure of the reference walk-through (DESIGN.md), reproduced from the bundled config.

The expected numbers below are the walk-through's published figures, or the
hand calculations it shows (q: 2048 x 2048 x 16 layers, ...), written out here;
none of them is taken from reportgen's own output.
"""

from __future__ import annotations

import pytest

from reportgen.data import ModelReport
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec
from tests.test_published_totals import PUBLISHED_TOTALS

LLAMA_1B = "meta-llama/Llama-3.2-1B-Instruct"
LAYERS = 16


@pytest.fixture(scope="module")
def llama() -> ModelReport:
    spec = ModelSpec(text=LLAMA_1B, origin="test")
    return analyse_spec(spec, "llama", Study(ranks=(8, 16), merge_check=False))


def test_total_parameters_match_the_published_count(llama: ModelReport) -> None:
    assert llama.model.total_params == PUBLISHED_TOTALS[LLAMA_1B]  # 1,235,814,400
    assert llama.model.tied_embeddings is True


@pytest.mark.parametrize(
    ("tag", "out_features", "in_features", "walkthrough_millions"),
    [
        ("q_proj", 2048, 2048, 67.11),
        ("k_proj", 512, 2048, 16.78),
        ("v_proj", 512, 2048, 16.78),
        ("o_proj", 2048, 2048, 67.11),
        ("gate_proj", 8192, 2048, 268.44),
        ("up_proj", 8192, 2048, 268.44),
        ("down_proj", 2048, 8192, 268.44),
    ],
)
def test_module_totals(
    llama: ModelReport, tag: str, out_features: int, in_features: int, walkthrough_millions: float
) -> None:
    row = llama.module(tag)
    assert row.layers == LAYERS
    assert row.shape == (out_features, in_features)
    assert row.params == out_features * in_features * LAYERS
    assert row.millions == walkthrough_millions
    assert row.agrees is True  # the config-derived shape agrees with the measured one


def test_all_linear_sum(llama: ModelReport) -> None:
    assert round(sum(row.params for row in llama.modules) / 1e6, 2) == 973.08
    assert llama.model.linear_millions == 973.08


@pytest.mark.parametrize(
    ("tag", "rank", "trainable", "percent"),
    [
        # r * (m + n) * 16 layers; percent of that module type.
        ("q_proj", 8, 8 * (2048 + 2048) * LAYERS, 0.78),
        ("q_proj", 16, 16 * (2048 + 2048) * LAYERS, 1.56),
        ("k_proj", 8, 8 * (2048 + 512) * LAYERS, 1.95),
        ("down_proj", 16, 16 * (8192 + 2048) * LAYERS, 0.98),
    ],
)
def test_per_module_lora(llama: ModelReport, tag: str, rank: int, trainable: int, percent: float) -> None:
    cell = llama.cell(tag, rank)
    assert cell.formula_trainable == trainable
    assert cell.peft_trainable == trainable
    assert cell.percent_of_targeted is not None
    assert round(cell.percent_of_targeted, 2) == percent


def test_walkthrough_q_proj_millions(llama: ModelReport) -> None:
    # "q: 0.52M / 0.78% at r=8, 1.05M / 1.56% at r=16"
    assert llama.cell("q_proj", 8).trainable_millions == 0.52
    assert llama.cell("q_proj", 16).trainable_millions == 1.05


@pytest.mark.parametrize(
    ("scenario", "matrices", "targeted_m", "rank", "trainable_m", "percent"),
    [
        ("qv_only", 32, 83.89, 8, 0.85, 1.02),
        ("qv_only", 32, 83.89, 16, 1.70, 2.03),
        ("qkvo", 64, 167.77, 8, 1.70, 1.02),
        ("qkvo", 64, 167.77, 16, 3.41, 2.03),
        ("all_linear", 112, 973.08, 8, 5.64, 0.58),
        ("all_linear", 112, 973.08, 16, 11.27, 1.16),
    ],
)
def test_scenarios(
    llama: ModelReport, scenario: str, matrices: int, targeted_m: float, rank: int, trainable_m: float, percent: float
) -> None:
    cell = llama.cell(scenario, rank)
    assert cell.status == "ok"
    assert cell.matrices == matrices
    assert cell.targeted_millions == targeted_m
    assert cell.trainable_millions == trainable_m
    assert cell.percent_of_targeted is not None
    assert round(cell.percent_of_targeted, 2) == percent
    assert cell.formula_trainable == cell.peft_trainable


def test_peft_step_in_peft_words(llama: ModelReport) -> None:
    reference = llama.peft_reference
    assert reference is not None
    assert reference.summary_line == (
        "trainable params: 3,407,872 || all params: 1,239,222,272 || trainable%: 0.2750"
    )
    assert reference.trainable_params == 3_407_872
    assert reference.all_params == 1_239_222_272
    assert "lora_alpha=32" in reference.config and "lora_dropout=0.05" in reference.config


def test_printouts_show_base_and_wrapped_model(llama: ModelReport) -> None:
    assert "(q_proj): Linear(in_features=2048, out_features=2048, bias=False)" in llama.printouts.base
    assert "(q_proj): lora.Linear(" in llama.printouts.peft
    assert "lora_A" not in llama.printouts.base
