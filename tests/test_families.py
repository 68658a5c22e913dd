"""Formula and PEFT agree for every plain-Linear cell, on shrunken configs of several real families.

The configs are the bundled ones with the widths cut down, so the same
architecture classes are built (same module names, same fused layouts) in
milliseconds. Expected counts are hand calculations from the widths written here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reportgen.data import ModelReport
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec

CATALOG = Path(__file__).resolve().parent.parent / "reportgen" / "catalog"
HIDDEN, HEADS, KV_HEADS, INTER, LAYERS, VOCAB = 64, 4, 2, 96, 2, 128
HEAD_DIM = HIDDEN // HEADS


def shrunk(name: str, **overrides: Any) -> dict[str, Any]:
    """A bundled config with tiny widths (family, module names and layout kept)."""
    config = json.loads((CATALOG / f"{name}.json").read_text())
    config.pop("auto_map", None)
    config.update(
        hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
        intermediate_size=INTER, num_hidden_layers=LAYERS, vocab_size=VOCAB,
    )
    config.update(head_dim=HEAD_DIM, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config.update(overrides)
    return config


def analyse(tmp_path: Path, config: dict[str, Any], ranks: tuple[int, ...] = (3, 8)) -> ModelReport:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return analyse_spec(ModelSpec(text=str(path), origin="test"), "tiny", Study(ranks=ranks, merge_check=False))


GATED_MLP_FAMILIES = [
    "meta-llama--Llama-3.2-1B-Instruct",
    "mistralai--Mistral-7B-Instruct-v0.3",
    "Qwen--Qwen2.5-0.5B-Instruct",
    "Qwen--Qwen3-8B",
    "google--gemma-2-2b-it",
    "HuggingFaceTB--SmolLM2-135M-Instruct",
]


@pytest.mark.parametrize("name", GATED_MLP_FAMILIES)
def test_gated_mlp_families(tmp_path: Path, name: str) -> None:
    report = analyse(tmp_path, shrunk(name))
    kv = KV_HEADS * HEAD_DIM
    # (out, in) of each projection, from the widths above.
    shapes = {
        "q_proj": (HIDDEN, HIDDEN), "k_proj": (kv, HIDDEN), "v_proj": (kv, HIDDEN), "o_proj": (HIDDEN, HIDDEN),
        "gate_proj": (INTER, HIDDEN), "up_proj": (INTER, HIDDEN), "down_proj": (HIDDEN, INTER),
    }
    assert {row.tag: row.shape for row in report.modules} == shapes
    for rank in (3, 8):
        expected = {tag: rank * (m + n) * LAYERS for tag, (m, n) in shapes.items()}
        for tag, trainable in expected.items():
            assert report.cell(tag, rank).peft_trainable == trainable
        assert report.cell("all_linear", rank).peft_trainable == sum(expected.values())
        assert report.cell("qv_only", rank).peft_trainable == expected["q_proj"] + expected["v_proj"]
        assert report.cell("qkvo", rank).matrices == 4 * LAYERS
    assert all(cell.formula_trainable == cell.peft_trainable for cell in report.cells)


def test_gpt2_conv1d_and_shared_c_proj_name(tmp_path: Path) -> None:
    config = json.loads((CATALOG / "openai-community--gpt2.json").read_text())
    config.update(n_embd=HIDDEN, n_head=HEADS, n_layer=LAYERS, vocab_size=VOCAB, n_positions=32)
    config.update(bos_token_id=0, eos_token_id=0)
    report = analyse(tmp_path, config, ranks=(8,))
    shapes = {row.tag: row.shape for row in report.modules}
    # GPT-2 keeps q, k, v in one Conv1D and names two different layers c_proj.
    assert shapes == {
        "c_attn": (3 * HIDDEN, HIDDEN), "attn.c_proj": (HIDDEN, HIDDEN),
        "c_fc": (4 * HIDDEN, HIDDEN), "mlp.c_proj": (HIDDEN, 4 * HIDDEN),
    }
    assert report.cell("attn.c_proj", 8).peft_trainable == 8 * (HIDDEN + HIDDEN) * LAYERS
    assert report.cell("mlp.c_proj", 8).peft_trainable == 8 * (HIDDEN + 4 * HIDDEN) * LAYERS
    assert report.cell("qkvo", 8).peft_trainable == 8 * ((3 * HIDDEN + HIDDEN) + 2 * HIDDEN) * LAYERS
    qv_only = report.cell("qv_only", 8)
    assert qv_only.status == "not_applicable" and "c_attn" in qv_only.note


def test_gpt2_c_attn_at_rank_8_trains_294912() -> None:
    # Issue 5's figure: 12 layers x 8 x (768 + 2304).
    report = analyse_spec(ModelSpec("openai-community/gpt2", "test"), "gpt2", Study(ranks=(8,), merge_check=False))
    assert report.cell("c_attn", 8).peft_trainable == 294_912 == 12 * 8 * (768 + 2304)


def test_phi3_fused_projections(tmp_path: Path) -> None:
    report = analyse(tmp_path, shrunk("microsoft--Phi-3-mini-4k-instruct", num_key_value_heads=HEADS), ranks=(8,))
    shapes = {row.tag: row.shape for row in report.modules}
    assert shapes == {
        "qkv_proj": (3 * HIDDEN, HIDDEN), "o_proj": (HIDDEN, HIDDEN),
        "gate_up_proj": (2 * INTER, HIDDEN), "down_proj": (HIDDEN, INTER),
    }
    assert report.cell("qv_only", 8).status == "not_applicable"
    assert report.cell("qkvo", 8).peft_trainable == 8 * ((3 * HIDDEN + HIDDEN) + 2 * HIDDEN) * LAYERS


def test_user_scenario_that_matches_nothing_is_named(tmp_path: Path) -> None:
    from reportgen.data import Scenario

    path = tmp_path / "config.json"
    path.write_text(json.dumps(shrunk("meta-llama--Llama-3.2-1B-Instruct")))
    study = Study(ranks=(8,), merge_check=False, scenarios=(Scenario("typo", ("q_prj",)),))
    report = analyse_spec(ModelSpec(str(path), "test"), "tiny", study)
    cell = report.cell("typo", 8)
    assert cell.status == "no_match"
    assert "q_prj" in cell.note
