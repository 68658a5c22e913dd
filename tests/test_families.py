"""Formula and PEFT agree for every plain-Linear cell, on shrunken configs of several real families.

The configs are the bundled ones with the tiny widths of their family
(tests/families.py), so the same architecture classes are built (same module
names, same fused layouts, the bundled config's other settings) in milliseconds.
Expected counts are hand calculations from those widths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reportgen.data import Scenario
from tests.families import COMMON, study_report, tiny_config

CATALOG = Path(__file__).resolve().parent.parent / "reportgen" / "catalog"
HIDDEN, HEADS, KV_HEADS, INTER, LAYERS = (COMMON[key] for key in (
    "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "num_hidden_layers"))
HEAD_DIM = HIDDEN // HEADS


def shrunk(name: str, **overrides: Any) -> dict[str, Any]:
    """A bundled config with the tiny widths of its family (module names, layout and other settings kept)."""
    config = json.loads((CATALOG / f"{name}.json").read_text())
    config.pop("auto_map", None)
    # The bundled head_dim and token ids would not fit the tiny widths and vocabulary.
    config.update(head_dim=HEAD_DIM, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return config | tiny_config(config["model_type"], **overrides)


GATED_MLP_FAMILIES = [
    "meta-llama--Llama-3.2-1B-Instruct",
    "mistralai--Mistral-7B-Instruct-v0.3",
    "Qwen--Qwen2.5-0.5B-Instruct",
    "Qwen--Qwen3-8B",
    "google--gemma-2-2b-it",
    "HuggingFaceTB--SmolLM2-135M-Instruct",
]


@pytest.mark.parametrize("name", GATED_MLP_FAMILIES)
def test_gated_mlp_families(write_config: Callable[..., Path], name: str) -> None:
    report = study_report(write_config(config=shrunk(name)), ranks=(3, 8))
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


def test_gpt2_conv1d_and_shared_c_proj_name(write_config: Callable[..., Path]) -> None:
    gpt2 = tiny_config("gpt2")
    hidden, layers = gpt2["n_embd"], gpt2["n_layer"]
    config = json.loads((CATALOG / "openai-community--gpt2.json").read_text()) | gpt2
    report = study_report(write_config(config=config), ranks=(8,))
    shapes = {row.tag: row.shape for row in report.modules}
    # GPT-2 keeps q, k, v in one Conv1D and names two different layers c_proj.
    assert shapes == {
        "c_attn": (3 * hidden, hidden), "attn.c_proj": (hidden, hidden),
        "c_fc": (4 * hidden, hidden), "mlp.c_proj": (hidden, 4 * hidden),
    }
    assert report.cell("attn.c_proj", 8).peft_trainable == 8 * (hidden + hidden) * layers
    assert report.cell("mlp.c_proj", 8).peft_trainable == 8 * (hidden + 4 * hidden) * layers
    assert report.cell("qkvo", 8).peft_trainable == 8 * ((3 * hidden + hidden) + 2 * hidden) * layers
    qv_only = report.cell("qv_only", 8)
    assert qv_only.status == "not_applicable" and "c_attn" in qv_only.note


def test_phi3_fused_projections(write_config: Callable[..., Path]) -> None:
    config = shrunk("microsoft--Phi-3-mini-4k-instruct", num_key_value_heads=HEADS)
    report = study_report(write_config(config=config), ranks=(8,))
    shapes = {row.tag: row.shape for row in report.modules}
    assert shapes == {
        "qkv_proj": (3 * HIDDEN, HIDDEN), "o_proj": (HIDDEN, HIDDEN),
        "gate_up_proj": (2 * INTER, HIDDEN), "down_proj": (HIDDEN, INTER),
    }
    assert report.cell("qv_only", 8).status == "not_applicable"
    assert report.cell("qkvo", 8).peft_trainable == 8 * ((3 * HIDDEN + HIDDEN) + 2 * HIDDEN) * LAYERS


def test_user_scenario_that_matches_nothing_is_named(write_config: Callable[..., Path]) -> None:
    config = write_config(config=shrunk("meta-llama--Llama-3.2-1B-Instruct"))
    report = study_report(config, ranks=(8,), scenarios=(Scenario("typo", ("q_prj",)),))
    cell = report.cell("typo", 8)
    assert cell.status == "no_match"
    assert "q_prj" in cell.note
