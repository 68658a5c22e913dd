"""The merge check on one representative of each class of architecture, at test widths (slow).

Each class (dense, tied, Conv1D, fused qkv, fused experts, shared experts, MLA,
Mamba hybrid, linear attention, composite multimodal) is a real transformers
family on a tiny config. On each the check must pass with PEFT's own merge, and
fail with a deliberately wrong one: the adapter thrown away (``unload``), or every
delta merged at twice its scale. The wrong merges are PEFT's own operations made
wrong, so the failure is independent of reportgen's bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers import AutoConfig, PretrainedConfig

from reportgen.merge import check_merge
from tests.families import tiny_config

pytestmark = pytest.mark.slow

ATTENTION = dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2,
                 num_hidden_layers=2, vocab_size=128)


def family(name: str, **fields: object) -> PretrainedConfig:
    return AutoConfig.for_model(name, **fields)


CLASSES: dict[str, tuple[Callable[[], PretrainedConfig], tuple[str, ...]]] = {
    # class -> (its tiny config, the walk-through's targets as the pipeline names them)
    "dense": (lambda: AutoConfig.for_model(**tiny_config("llama", tie_word_embeddings=False)),
              ("q_proj", "k_proj", "v_proj", "o_proj")),
    "tied": (lambda: AutoConfig.for_model(**tiny_config("llama")), ("q_proj", "k_proj", "v_proj", "o_proj")),
    "Conv1D": (lambda: AutoConfig.for_model(**tiny_config("gpt2")), ("c_attn", "attn.c_proj")),
    "fused qkv": (lambda: AutoConfig.for_model(**tiny_config("phi3")), ("qkv_proj", "o_proj")),
    "fused experts": (lambda: AutoConfig.for_model(**tiny_config("mixtral")), ("all-linear",)),
    "shared experts": (lambda: family("qwen2_moe", **ATTENTION, moe_intermediate_size=32, num_experts=4,
                                      num_experts_per_tok=2, shared_expert_intermediate_size=48),
                       ("all-linear",)),
    "MLA": (lambda: family("deepseek_v3", vocab_size=128, hidden_size=64, intermediate_size=96,
                           moe_intermediate_size=32, num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32,
                           kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16,
                           n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1,
                           num_hidden_layers=2, first_k_dense_replace=1),
            ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")),
    "Mamba hybrid": (lambda: family("jamba", **ATTENTION | {"num_hidden_layers": 4}, num_experts=2,
                                    num_experts_per_tok=1, attn_layer_period=2, attn_layer_offset=1,
                                    expert_layer_period=2, expert_layer_offset=1, mamba_d_state=8,
                                    mamba_dt_rank=8, use_mamba_kernels=False),
                     ("all-linear",)),
    "linear attention": (lambda: family("qwen3_next", **ATTENTION, head_dim=16, moe_intermediate_size=32,
                                        shared_expert_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
                                        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16,
                                        linear_value_head_dim=16,
                                        layer_types=["linear_attention", "full_attention"]),
                         ("all-linear",)),
    "composite multimodal": (lambda: family(
        "gemma3",
        text_config=dict(model_type="gemma3_text", **ATTENTION, head_dim=16,
                         layer_types=["sliding_attention", "full_attention"]),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        mm_tokens_per_image=4), ("q_proj", "k_proj", "v_proj", "o_proj")),
}


def _drop_adapter(peft_model: PeftModel) -> nn.Module:
    """Wrong: the adapter thrown away instead of merged."""
    return peft_model.unload()


def _double_every_delta(peft_model: PeftModel) -> nn.Module:
    """Wrong: every LoRA delta merged at twice its scale."""
    for module in peft_model.modules():
        if isinstance(module, BaseTunerLayer) and hasattr(module, "scaling"):
            module.scaling = {name: 2 * value for name, value in module.scaling.items()}
    return peft_model.merge_and_unload()


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_merge_check_passes_and_catches_a_wrong_merge(kind: str) -> None:
    make, targets = CLASSES[kind]
    check, printout = check_merge(make(), targets, device="cpu")
    assert check.status == "passed", check.note
    assert check.lora_effect is not None and check.tolerance is not None
    assert check.lora_effect > 10 * check.tolerance  # the LoRA moved the logits: a wrong merge is visible
    second, _ = check_merge(make(), ("all-linear",), device="cpu", replica=True)
    assert second.status == "passed", second.note
    for wrong in (_drop_adapter, _double_every_delta):
        failed, _ = check_merge(make(), targets, device="cpu", merge=wrong)
        assert failed.status == "failed", (wrong.__name__, failed.note)
        assert "differ from the adapted ones" in failed.note
