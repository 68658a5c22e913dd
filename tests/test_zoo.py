"""The zoo sweep: every causal-LM model type of the pinned transformers, from its own default config.

Each model is built on the meta device and every default cell is counted twice,
by reportgen's closed form and by PEFT itself (the independent source). The
sweep passes when no model fails but where transformers itself cannot build its
default config, no cell has the two counts disagree, and every cell that is not
counted says why in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from reportgen.data import NO_MATCH, NOT_APPLICABLE, OK
from reportgen.zoo import causal_lm_types, is_build_failure, sweep, write_zoo


def test_the_zoo_covers_the_whole_causal_lm_mapping(tmp_path: Path) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    entries = write_zoo(tmp_path, ["llama", "gpt2", "mamba"])
    assert [entry.model_type for entry in entries] == ["llama", "gpt2", "mamba"]
    assert all(entry.path is not None and entry.path.is_file() for entry in entries)
    assert [entry.architecture for entry in entries] == ["LlamaForCausalLM", "GPT2LMHeadModel", "MambaForCausalLM"]
    assert len(causal_lm_types()) == len(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) > 180  # the pinned transformers: 189


@pytest.mark.slow
def test_every_causal_lm_of_transformers_is_counted_exactly_or_told_why(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()  # what came before (pytest's own lines)
    entries, result, _ = sweep(tmp_path, jobs=os.cpu_count() or 1)
    # Quiet means quiet: what transformers says while building these configs (bos_token_id must be ...,
    # add is_decoder=True, the xIELU installation hint: tests/test_quiet.py's control shows it printing) is
    # in each model's report, and nothing reached the terminal, from this process or its workers.
    assert capfd.readouterr() == ("", "")
    assert sum(1 for report in result.reports if report.warnings) >= 3
    assert len(entries) == len(causal_lm_types())
    # No model silently dropped: every config written is either a report or a failure line.
    written = {str(entry.path) for entry in entries if entry.path}
    assert {report.model.id for report in result.reports} | {failure.id for failure in result.failures} == written
    ours = [failure.error for failure in result.failures if not is_build_failure(failure)]
    assert ours == [], ours
    assert all("\n" not in failure.error for failure in result.failures)
    mismatches = [(r.model.model_type, c.scenario, c.rank, c.note) for r in result.reports for c in r.mismatches]
    assert mismatches == [], mismatches
    for report in result.reports:
        assert report.status_count(OK) > 0, f"{report.model.model_type}: no cell counted by both"
        for cell in report.cells:
            if cell.status in (NOT_APPLICABLE, NO_MATCH):
                assert cell.note and "\n" not in cell.note, (report.model.model_type, cell.scenario)
            else:
                assert cell.status == OK and cell.formula_trainable == cell.peft_trainable
    # Most default configs build: the ones that do not are transformers' own failures, listed in ZOO.md.
    assert len(result.reports) >= 0.9 * sum(1 for entry in entries if entry.path)


# DeepSeek-V2-Lite's config.json (deepseek-ai/DeepSeek-V2-Lite), its widths as published; the model itself
# failed as a whole before (a per-module cell PEFT refuses took it down). MLA without a q low-rank pair.
DEEPSEEK_V2_LITE = {
    "model_type": "deepseek_v2", "architectures": ["DeepseekV2ForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                 "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"},
    "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 64,
    "n_shared_experts": 2, "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_attention_heads": 16,
    "num_key_value_heads": 16, "kv_lora_rank": 512, "q_lora_rank": None, "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64, "v_head_dim": 128, "first_k_dense_replace": 1, "moe_layer_freq": 1,
    "vocab_size": 102400, "max_position_embeddings": 163840, "tie_word_embeddings": False,
    "bos_token_id": 100000, "eos_token_id": 100001, "torch_dtype": "bfloat16",
}


def test_deepseek_v2_lite_is_reported_cell_by_cell(write_config: Callable[..., Path]) -> None:
    from tests.families import study_report

    report = study_report(write_config(config=DEEPSEEK_V2_LITE), ranks=(8,))
    assert report.mismatches == ()
    # qkvo on MLA, r=8, per layer: q_proj (16 heads x (128 + 64), 2048) 8 * (3072 + 2048) = 40,960;
    # kv_a_proj_with_mqa (512 + 64, 2048) 8 * 2,624 = 20,992; kv_b_proj (16 x (128 + 128), 512) 8 * 4,608 = 36,864;
    # o_proj (2048, 16 x 128) 8 * 4,096 = 32,768; 131,584 a layer, 27 layers.
    qkvo = report.cell("qkvo", 8)
    assert qkvo.status == OK and qkvo.peft_trainable == 27 * 131_584 == 3_552_768
    assert set(qkvo.targets) == {"q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"}
    qv = report.cell("qv_only", 8)
    assert qv.status == NOT_APPLICABLE and "kv_a_proj_with_mqa, kv_b_proj" in qv.note
    # The shared experts' gate_proj alone: PEFT refuses it (fused into the experts' gate_up_proj), in its words.
    gate = report.cell("shared_experts.gate_proj", 8)
    assert gate.status == NOT_APPLICABLE
    assert gate.note.startswith("not applicable: PEFT refuses this cell: Cannot convert PEFT target(s) gate_proj")
    assert gate.matrices == 0 and gate.formula_trainable is None
    # all_linear: attention as above; routed experts fused (64 experts; gate_up_proj at rank 2r, PEFT's v5 rule),
    # router gate (64, 2048) through gate.weight; the dense layer 0 and the shared experts' Linear layers are
    # renamed onto the expert parameters by PEFT's conversion and so not adapted themselves.
    experts = 16 * 64 * (2 * 1408 + 2048) + 8 * 64 * (2048 + 1408)
    router = 8 * (64 + 2048)
    assert report.cell("all_linear", 8).peft_trainable == 27 * 131_584 + 26 * (experts + router)
