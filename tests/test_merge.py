"""The merge check: it passes on real families, it fails on a wrong merge, and it says what it materialised.

Every model here is a shrunken config of a real family built with
``AutoConfig.for_model``; the expected parameter counts come from transformers
building the same config on its own, or from a hand calculation written out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from peft import PeftModel
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from reportgen import merge
from reportgen.cli import cli
from reportgen.errors import UsageError
from reportgen.merge import check_merge, replica_config

QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")
LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True)

# family -> (config kwargs, the walk-through's q/k/v/o targets as the pipeline names them)
FAMILIES: dict[str, tuple[dict[str, object], tuple[str, ...]]] = {
    "llama": (LLAMA, QKVO),
    "qwen2": (dict(LLAMA, tie_word_embeddings=False), ("all-linear",)),
    "gpt2": (dict(n_embd=64, n_layer=2, n_head=4, vocab_size=256, n_positions=64, bos_token_id=0, eos_token_id=0),
             ("c_attn", "attn.c_proj")),
    "gemma2": (dict(LLAMA, num_hidden_layers=4, head_dim=16), QKVO),
    "phi3": (dict(LLAMA, tie_word_embeddings=False, pad_token_id=0, bos_token_id=0, eos_token_id=0),
             ("qkv_proj", "o_proj")),
    "mixtral": (dict(LLAMA, tie_word_embeddings=False, num_local_experts=4, num_experts_per_tok=2), QKVO),
}


def tiny(family: str, **overrides: object) -> PretrainedConfig:
    """A shrunken config of a real family."""
    kwargs, _ = FAMILIES[family]
    return AutoConfig.for_model(family, **{**kwargs, **overrides})


def reference_model(config: PretrainedConfig) -> nn.Module:
    """The same config built by transformers on its own: the independent source of counts and printouts."""
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_merge_check_passes_on_real_families(family: str) -> None:
    config = tiny(family)
    check, printout = check_merge(config, FAMILIES[family][1], device="cpu")
    reference = reference_model(config)
    assert check.status == "passed", check.note
    assert check.passed is True
    assert check.max_abs_diff is not None and check.tolerance is not None
    assert check.max_abs_diff <= check.tolerance
    # Not vacuous: the LoRA moved the logits by far more than the tolerance.
    assert check.lora_effect is not None and check.lora_effect > 10 * check.tolerance
    assert (check.device, check.dtype) == ("cpu", "float32")
    assert check.params_after_merge == reference.num_parameters()
    assert check.materialised.startswith(f"whole model: all {config.num_hidden_layers} layers")
    # The merged model prints exactly as the plain base model does: no LoRA layer left.
    assert printout == repr(reference)


def test_params_after_merge_equal_a_hand_count() -> None:
    # Tiny Llama, tied: embedding 256*64 (head shares it); per layer q 64*64, k and v 64*32
    # (2 kv heads of 16), o 64*64, gate/up/down 3*64*128, two norms 2*64; a final norm 64.
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    expected = 256 * 64 + 3 * per_layer + 64
    assert expected == 127_424
    check, _ = check_merge(tiny("llama"), QKVO, device="cpu")
    assert check.params_after_merge == expected
    assert "tied embeddings" in check.note


def _double_one_scaling(peft_model: PeftModel) -> nn.Module:
    """A wrong merge: one layer's delta scaled by 2."""
    layer = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    layer.scaling["default"] *= 2
    return peft_model.merge_and_unload()


def _perturb_one_weight(peft_model: PeftModel) -> nn.Module:
    """A wrong merge: the right merge, then one merged weight nudged."""
    merged = peft_model.merge_and_unload()
    with torch.no_grad():
        merged.model.layers[1].self_attn.o_proj.weight[0, 0] += 0.5
    return merged


def _drop_adapter(peft_model: PeftModel) -> nn.Module:
    """A wrong merge: the adapter thrown away instead of merged."""
    return peft_model.unload()


@pytest.mark.parametrize("wrong_merge", [_double_one_scaling, _perturb_one_weight, _drop_adapter])
def test_a_wrong_merge_is_reported_as_failed(wrong_merge: Callable[[PeftModel], nn.Module]) -> None:
    check, _ = check_merge(tiny("llama"), QKVO, device="cpu", merge=wrong_merge)
    assert check.status == "failed"
    assert check.passed is False
    assert check.max_abs_diff is not None and check.tolerance is not None
    assert check.max_abs_diff > check.tolerance
    assert "differ from the adapted ones" in check.note


def test_a_lora_that_does_not_move_the_logits_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # Zero adapter weights: merging them changes nothing, so agreement would prove nothing.
    monkeypatch.setattr(merge, "LORA_SCALE", 0.0)
    check, _ = check_merge(tiny("llama"), QKVO, device="cpu")
    assert check.status == "failed" and check.passed is False
    assert check.lora_effect == 0.0
    assert "moved the logits by only" in check.note


def test_lora_layers_left_in_place_fail_the_structure_check() -> None:
    def merged_but_not_unloaded(peft_model: PeftModel) -> nn.Module:
        peft_model.merge_adapter()  # the logits are right, but the LoRA wrappers stay
        return peft_model.get_base_model()

    check, _ = check_merge(tiny("llama"), QKVO, device="cpu", merge=merged_but_not_unloaded)
    assert check.status == "failed" and check.passed is False
    assert check.max_abs_diff is not None and check.tolerance is not None
    assert check.max_abs_diff <= check.tolerance
    assert "LoRA module(s) or weight(s) remain" in check.note
    assert "differ from the base model's classes" in check.note


def test_untied_embeddings_after_merge_fail() -> None:
    def untie(peft_model: PeftModel) -> nn.Module:
        merged = peft_model.merge_and_unload()
        merged.lm_head.weight = nn.Parameter(merged.lm_head.weight.detach().clone())
        return merged

    check, _ = check_merge(tiny("llama"), QKVO, device="cpu", merge=untie)
    assert check.passed is False
    assert "no longer tied" in check.note
    assert "parameters after the merge" in check.note  # the copy is counted too


def test_replica_when_the_whole_model_is_over_budget() -> None:
    config = tiny("llama", num_hidden_layers=12, tie_word_embeddings=False, intermediate_size=256)
    # By hand: per layer 64*64 + 2*64*32 + 64*64 + 3*64*256 + 2*64 = 61,568; the whole model
    # 12 layers + embedding and head 2*256*64 + final norm 64 = 771,648 (~3 MB in fp32); two layers 155,968.
    whole, two_layers = 12 * 61_568 + 2 * 256 * 64 + 64, 2 * 61_568 + 2 * 256 * 64 + 64
    assert (whole, two_layers) == (771_648, 155_968)
    budget = merge.RUNTIME_BYTES + 2 * 1024**2  # room for two layers, not for twelve
    check, printout = check_merge(config, QKVO, device="cpu", budget_bytes=budget)
    assert check.status == "passed", check.note
    assert check.materialised.startswith("replica: 2 of 12 layers with the same widths")
    assert "the whole model needs" in check.materialised and f"budget {budget / 1024**3:.1f} GB" in check.materialised
    assert check.params_after_merge == two_layers
    assert "(0-1): 2 x LlamaDecoderLayer" in printout


def test_skipped_when_even_one_layer_is_over_budget() -> None:
    check, printout = check_merge(tiny("llama"), QKVO, device="cpu", budget_bytes=1024)
    assert check.status == "skipped"
    assert check.passed is None and check.max_abs_diff is None and check.params_after_merge is None
    assert check.materialised == "nothing"
    assert re.match(r"skipped: too large for the budget: the whole model needs ~\d+\.\d GB and a 1-layer "
                    r"replica ~\d+\.\d GB in float32, the budget is 0\.0 GB \(--merge-budget\)$", check.note)
    assert printout == ""


def test_replica_keeps_every_kind_of_layer() -> None:
    gemma = tiny("gemma2", num_hidden_layers=6)
    assert gemma.layer_types[:2] == ["sliding_attention", "full_attention"]
    replica = replica_config(gemma, 1)
    assert replica.num_hidden_layers == 2
    assert replica.layer_types == ["sliding_attention", "full_attention"]
    # Five sliding layers then a full one (Gemma-3's pattern): two layers are not enough to show both.
    pattern = ["sliding_attention"] * 5 + ["full_attention"]
    replica = replica_config(tiny("gemma2", num_hidden_layers=6, layer_types=pattern), 2)
    assert replica.layer_types == ["sliding_attention", "sliding_attention", "full_attention"]
    assert replica.num_hidden_layers == 3
    assert gemma.num_hidden_layers == 6  # the original config is left alone


def test_gemma2_replica_runs() -> None:
    config = tiny("gemma2", num_hidden_layers=6)
    check, _ = check_merge(config, QKVO, device="cpu", budget_bytes=merge.RUNTIME_BYTES + 1024**2)
    assert check.status == "passed", check.note
    assert check.materialised.startswith("replica: 2 of 6 layers")
    assert check.params_after_merge == reference_model(replica_config(config, 2)).num_parameters()


@pytest.mark.parametrize("wrong_merge", [None, _drop_adapter])
def test_bf16_on_a_dense_model(wrong_merge: Callable[[PeftModel], nn.Module] | None) -> None:
    # bf16 is not a default (see merge_dtype), but its looser tolerance still passes a right merge
    # and catches a wrong one.
    kwargs = {"merge": wrong_merge} if wrong_merge else {}
    check, _ = check_merge(tiny("llama"), QKVO, device="cpu", dtype=torch.bfloat16, **kwargs)
    assert check.dtype == "bfloat16"
    assert check.passed is (wrong_merge is None), check.note


def test_device_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert merge.select_device("auto") == "cpu"
    assert merge.select_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="torch sees no CUDA device"):
        merge.select_device("cuda")
    assert merge.merge_dtype("cpu") is torch.float32
    assert merge.default_budget_bytes("cpu") == 8 * 1024**3

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: type("P", (), {"total_memory": 80 * 1024**3}))
    assert merge.select_device("auto") == "cuda"
    assert merge.select_device("cuda") == "cuda"
    assert merge.merge_dtype("cuda") is torch.float32
    assert merge.default_budget_bytes("cuda") == 40 * 1024**3
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # a user's TF32 setting, restored after the check
    try:
        with merge.strict_fp32("cuda"):
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(saved)


def _models_file(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    tiny("llama").to_json_file(str(folder / "config.json"))
    models = tmp_path / "models.txt"
    models.write_text(f"{folder}\n")
    return models


def test_report_json_has_the_merge_check(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "--models", str(_models_file(tmp_path)), "--out", str(out),
                                      "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    (report,) = out.glob("*/report.json")
    payload = json.loads(report.read_text())
    check = payload["merge_check"]
    assert check["status"] == "passed" and check["passed"] is True
    assert check["params_after_merge"] == payload["model"]["total_params"] == 127_424
    assert check["materialised"].startswith("whole model: all 3 layers")
    assert check["device"] == "cpu" and check["dtype"] == "float32"
    assert "q_proj, k_proj, v_proj, o_proj" in check["materialised"]
    # The merged model prints exactly as transformers' own build of the same config: no LoRA layer left.
    assert payload["printouts"]["merged"] == repr(reference_model(tiny("llama")))


def test_no_merge_check_and_budget_options(tmp_path: Path) -> None:
    models = _models_file(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["report", "--models", str(models), "--out", str(tmp_path / "a"), "-q",
                                 "--no-merge-check"])
    assert result.exit_code == 0, result.output
    check = json.loads(next((tmp_path / "a").glob("*/report.json")).read_text())["merge_check"]
    assert check["status"] == "skipped" and check["passed"] is None
    assert check["note"] == "skipped: --no-merge-check was given"

    result = runner.invoke(cli, ["report", "--models", str(models), "--out", str(tmp_path / "b"), "-q",
                                 "--merge-budget", "0.0001"])
    assert result.exit_code == 0, result.output
    check = json.loads(next((tmp_path / "b").glob("*/report.json")).read_text())["merge_check"]
    assert check["status"] == "skipped" and check["note"].startswith("skipped: too large for the budget")

    result = runner.invoke(cli, ["report", "--models", str(models), "--merge-budget", "0"])
    assert result.exit_code == 2
    assert "--merge-budget" in result.output


def test_device_cuda_without_a_gpu_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = CliRunner().invoke(cli, ["report", "--models", str(_models_file(tmp_path)), "--device", "cuda"])
    assert result.exit_code == 2
    assert "--device cuda: torch sees no CUDA device here" in result.output


def test_a_check_that_cannot_finish_is_an_error_never_a_pass() -> None:
    def out_of_memory(peft_model: PeftModel) -> nn.Module:
        raise RuntimeError("CUDA out of memory (simulated)")

    check, printout = check_merge(tiny("llama"), QKVO, device="cpu", merge=out_of_memory)
    assert check.status == "error"
    assert check.passed is None and check.max_abs_diff is None
    assert check.note == "the merge check could not run: RuntimeError: CUDA out of memory (simulated)"
    assert printout == ""
