"""The merge check: it passes on real families, it fails on a wrong merge, and it says what it materialised.

Every model here is the tiny config of a real family (tests/families.py) built with
``AutoConfig.for_model``; the expected parameter counts come from transformers
building the same config on its own, or from a hand calculation written out; the
dtype and device come from the tensors the check really merged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from peft import PeftModel
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from reportgen import merge
from reportgen.errors import UsageError
from reportgen.build import build_meta_model
from reportgen.merge import check_merge, merge_and_unload
from reportgen.replica import layer_stacks, prune
from tests.families import TINY_LLAMA_PARAMS, tiny_config

if TYPE_CHECKING:
    from tests.conftest import Cli

QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")

# family -> the walk-through's q/k/v/o targets as the pipeline names them (Qwen2: all-linear)
TARGETS: dict[str, tuple[str, ...]] = {
    "llama": QKVO,  # tied embeddings
    "qwen2": ("all-linear",),
    "gpt2": ("c_attn", "attn.c_proj"),
    "gemma2": QKVO,
    "phi3": ("qkv_proj", "o_proj"),  # untied
    "mixtral": QKVO,  # untied
}


def tiny(family: str, **overrides: object) -> PretrainedConfig:
    """The tiny config of a real family (tests/families.py)."""
    return AutoConfig.for_model(**tiny_config(family, **overrides))


def noting_tensors(seen: set[tuple[str, str]], merge_with: merge.Merge = merge_and_unload) -> merge.Merge:
    """The merge, noting (dtype, device) of every parameter of the merged model it hands back."""

    def merge_and_note(peft_model: PeftModel) -> nn.Module:
        merged = merge_with(peft_model)
        seen.update((str(p.dtype).removeprefix("torch."), p.device.type) for p in merged.parameters())
        return merged

    return merge_and_note


def reference_model(config: PretrainedConfig) -> nn.Module:
    """The same config built by transformers on its own: the independent source of counts and printouts."""
    return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("family", sorted(TARGETS))
def test_merge_check_passes_on_real_families(family: str) -> None:
    config = tiny(family)
    tensors: set[tuple[str, str]] = set()
    check, printout = check_merge(config, TARGETS[family], device="cpu", merge=noting_tensors(tensors))
    reference = reference_model(config)
    assert check.status == "passed", check.note
    assert check.passed is True
    assert check.max_abs_diff is not None and check.tolerance is not None
    assert check.max_abs_diff <= check.tolerance
    # Not vacuous: the LoRA moved the logits by far more than the tolerance.
    assert check.lora_effect is not None and check.lora_effect > 10 * check.tolerance
    # On CPU the check runs in fp32 by default, and says so: the tensors it merged were fp32 on the CPU.
    assert tensors == {("float32", "cpu")}
    assert {(check.dtype, check.device)} == tensors
    assert check.params_after_merge == reference.num_parameters()
    assert check.materialised.startswith(f"whole model: all {config.num_hidden_layers} layers")
    # The merged model prints exactly as the plain base model does: no LoRA layer left.
    assert printout == repr(reference)


def test_params_after_merge_equal_a_hand_count() -> None:
    check, _ = check_merge(tiny("llama"), QKVO, device="cpu")
    assert check.params_after_merge == TINY_LLAMA_PARAMS  # tied: the head shares the embedding
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
    # 12 layers + embedding and head 2*128*64 + final norm 64 = 755,264 (~3 MB in fp32); two layers 139,584.
    two_layers = 2 * 61_568 + 2 * 128 * 64 + 64
    budget = merge.RUNTIME_BYTES + 2 * 1024**2  # room for two layers, not for twelve
    check, printout = check_merge(config, QKVO, device="cpu", budget_bytes=budget)
    assert check.status == "passed", check.note
    # Every layer is of one kind: two are kept, so a stack is exercised; 128 tokens are under the replica's 512.
    assert check.materialised.startswith("replica: model.layers: 2 of 12 layers; widths unchanged")
    assert "the whole model needs" in check.materialised and f"budget {budget / 1024**3:.1f} GiB" in check.materialised
    assert check.params_after_merge == two_layers
    assert "(0-1): 2 x LlamaDecoderLayer" in printout


def test_skipped_when_even_one_layer_is_over_budget() -> None:
    check, printout = check_merge(tiny("llama"), QKVO, device="cpu", budget_bytes=1024)
    assert check.status == "skipped"
    assert check.passed is None and check.max_abs_diff is None and check.params_after_merge is None
    assert check.materialised == "nothing"
    assert re.match(r"skipped: too large for the budget: the whole model needs ~\d+\.\d GiB and a replica of a "
                    r"single layer of each kind with two experts ~\d+\.\d GiB in float32, the budget is 0\.0 GiB "
                    r"\(--merge-budget\)$", check.note)
    assert printout == ""


def _pruned(config: PretrainedConfig) -> tuple[nn.Module, list[list[int]]]:
    model = build_meta_model(config)
    stacks = layer_stacks(model)
    keep = {stack.path: stack.kept() for stack in stacks}
    prune(model, stacks, keep)
    return model, list(keep.values())


def test_replica_keeps_every_kind_of_layer() -> None:
    # Five sliding layers then a full one (Gemma-3's pattern): the first two layers would not show both.
    pattern = ["sliding_attention"] * 5 + ["full_attention"]
    model, kept = _pruned(tiny("gemma2", num_hidden_layers=6, layer_types=pattern))
    assert kept == [[0, 5]]
    assert model.config.layer_types == ["sliding_attention", "full_attention"]
    assert model.config.num_hidden_layers == 2 and len(model.model.layers) == 2


def tiny_deepseek(**overrides: object) -> PretrainedConfig:
    """DeepSeek-V3 (MLA attention, shared and routed experts) at test widths."""
    widths: dict[str, object] = dict(
        vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_attention_heads=4,
        num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
        v_head_dim=16, n_shared_experts=1,
    )
    return AutoConfig.for_model("deepseek_v3", **(widths | overrides))


def test_replica_of_a_model_with_dense_and_moe_layers() -> None:
    # DeepSeek-V3's shape: the first layers dense, the rest MoE (first_k_dense_replace), 8 experts top-4 in 4
    # groups. The replica: one dense and one MoE layer, 4 experts top-2 in 2 groups, one group picked.
    config = tiny_deepseek(num_hidden_layers=6, first_k_dense_replace=3, n_routed_experts=8,
                  num_experts_per_tok=4, n_group=4, topk_group=2, vocab_size=1000)
    check, printout = check_merge(config, QKVO, device="cpu", replica=True)  # a replica although the whole fits
    assert check.status == "passed", check.note
    assert check.materialised.startswith("replica: model.layers: 2 of 6 layers (1 dense, 1 MoE); 4 of 8 experts; "
                                         "top-2 of them (was top-4); 2 expert group(s) (was 4); 1 group picked "
                                         "(was 2); 512 of 1,000 tokens; widths unchanged"), check.materialised
    # The same replica, as transformers builds it from a config written by hand: 2 layers, the first dense.
    by_hand = tiny_deepseek(num_hidden_layers=2, first_k_dense_replace=1, n_routed_experts=4,
                   num_experts_per_tok=2, n_group=2, topk_group=1, vocab_size=512)
    assert check.params_after_merge == reference_model(by_hand).num_parameters()


def test_one_replica_per_kind_when_both_kinds_together_are_over_budget() -> None:
    config = tiny_deepseek(num_hidden_layers=4, first_k_dense_replace=1, intermediate_size=4096,
                           moe_intermediate_size=1024, n_routed_experts=4, num_experts_per_tok=2, n_group=1,
                           topk_group=1)
    # By hand, in fp32: the dense MLP 3*64*4096 = 786,432 parameters (3.0 MiB); the MoE layer's four experts
    # and one shared expert 5*3*64*1024 = 983,040 (3.75 MiB). Each fits 5 MiB with its attention, both do not.
    budget = merge.RUNTIME_BYTES + 5 * 1024**2
    check, _ = check_merge(config, QKVO, device="cpu", budget_bytes=budget)
    assert check.status == "passed", check.note
    first, second = check.materialised.split(" | ")
    assert first.startswith("1) replica of one kind of layer: model.layers: 1 of 4 layers (1 dense)")
    assert second.startswith("2) replica of one kind of layer: model.layers: 1 of 4 layers (1 MoE)")
    assert check.note.startswith("1) merged logits equal the adapted ones") and " | 2) merged logits equal" in check.note


def test_gemma2_replica_runs() -> None:
    config = tiny("gemma2", num_hidden_layers=6)
    # ~0.8 MB for six layers in fp32, ~0.3 MB for two.
    check, _ = check_merge(config, QKVO, device="cpu", budget_bytes=merge.RUNTIME_BYTES + 512 * 1024)
    assert check.status == "passed", check.note
    assert check.materialised.startswith("replica: model.layers: 2 of 6 layers")
    assert check.params_after_merge == reference_model(tiny("gemma2", num_hidden_layers=2)).num_parameters()


@pytest.mark.parametrize("wrong_merge", [None, _drop_adapter])
def test_bf16_on_a_dense_model(wrong_merge: Callable[[PeftModel], nn.Module] | None) -> None:
    # bf16 is not a default (see merge_dtype), but its looser tolerance still passes a right merge
    # and catches a wrong one.
    tensors: set[tuple[str, str]] = set()
    check, _ = check_merge(tiny("llama"), QKVO, device="cpu", dtype=torch.bfloat16,
                           merge=noting_tensors(tensors, wrong_merge or merge_and_unload))
    # The check really ran in bf16 (every merged tensor is bf16) and its report names the dtype it ran in.
    assert tensors == {("bfloat16", "cpu")}
    assert {(check.dtype, check.device)} == tensors
    assert check.passed is (wrong_merge is None), check.note


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_check_runs_in_fp32_on_the_gpu() -> None:
    # fp32 on the GPU too (see merge_dtype: bf16 can flip a mixture of experts' routing), TF32 off.
    tensors: set[tuple[str, str]] = set()
    check, _ = check_merge(tiny("mixtral"), QKVO, device="cuda", merge=noting_tensors(tensors))
    assert check.status == "passed", check.note
    assert tensors == {("float32", "cuda")}
    assert {(check.dtype, check.device)} == tensors


def test_device_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert merge.select_device("auto") == "cpu"
    assert merge.select_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="torch sees no CUDA device"):
        merge.select_device("cuda")
    assert merge.default_budget_bytes("cpu") == 8 * 1024**3

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: type("P", (), {"total_memory": 80 * 1024**3}))
    assert merge.select_device("auto") == "cuda"
    assert merge.select_device("cuda") == "cuda"
    assert merge.default_budget_bytes("cuda") == 40 * 1024**3
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # a user's TF32 setting, restored after the check
    try:
        with merge.strict_fp32("cuda"):
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(saved)


def test_report_json_has_the_merge_check(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    result = run_cli.report(tmp_path, [write_config()], "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    payload = run_cli.report_json(tmp_path / "out")
    check = payload["merge_check"]
    assert check["status"] == "passed" and check["passed"] is True
    assert check["params_after_merge"] == payload["model"]["total_params"] == TINY_LLAMA_PARAMS
    assert check["materialised"].startswith("whole model: all 2 layers")
    assert check["device"] == "cpu" and check["dtype"] == "float32"
    assert "q_proj, k_proj, v_proj, o_proj" in check["materialised"]
    # The merged model prints exactly as transformers' own build of the same config: no LoRA layer left.
    assert payload["printouts"]["merged"] == repr(reference_model(tiny("llama")))


def test_no_merge_check_and_budget_options(tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli) -> None:
    model = write_config()
    result = run_cli.report(tmp_path, [model], "-q", "--no-merge-check", out=tmp_path / "a")
    assert result.exit_code == 0, result.output
    check = run_cli.report_json(tmp_path / "a")["merge_check"]
    assert check["status"] == "skipped" and check["passed"] is None
    assert check["note"] == "skipped: --no-merge-check was given"

    result = run_cli.report(tmp_path, [model], "-q", "--merge-budget", "0.0001", out=tmp_path / "b")
    assert result.exit_code == 0, result.output
    check = run_cli.report_json(tmp_path / "b")["merge_check"]
    assert check["status"] == "skipped" and check["note"].startswith("skipped: too large for the budget")

    result = run_cli("report", "--models", tmp_path / "models.txt", "--merge-budget", "0")
    assert result.exit_code == 2
    assert "--merge-budget" in result.output


def test_device_cuda_without_a_gpu_is_a_usage_error(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run_cli.report(tmp_path, [write_config()], "--device", "cuda")
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
