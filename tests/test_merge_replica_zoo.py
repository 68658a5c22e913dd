"""Zoo architectures whose replica or check setup once broke, each on a tiny config of its own family.

Each test names the zoo failure it guards against; the expected outcome comes from
the model's own code (its initialiser, its forward pass) or PEFT's, never from
what reportgen computed.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig

from reportgen.materialise import PatternFill, materialise
from reportgen.merge import check_merge
from reportgen.replica import shrink_config

pytestmark = pytest.mark.slow  # real forward passes, as tests/test_merge_classes.py: in make test, not test-fast

QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")


def test_xlm_replica_loops_over_the_kept_layers_only() -> None:
    # XLM copies n_layers into the model and loops over it: a 2-of-3-layer replica raised IndexError.
    config = AutoConfig.for_model("xlm", vocab_size=128, emb_dim=32, n_layers=3, n_heads=2)
    check, _ = check_merge(config, ("all-linear",), device="cpu", replica=True)
    assert check.status == "passed", check.note
    assert "2 of 3 layers" in check.materialised


def test_deepseek_v2_with_top_k_unset_and_unaligned_experts_is_checked() -> None:
    # transformers' default DeepSeek-V2 config leaves num_experts_per_tok None (topk got None), and its
    # 1,407-wide experts are not 16-byte rows, which torch's grouped_mm refuses: 25 fp32 values are 100 bytes.
    config = AutoConfig.for_model(
        "deepseek_v2", vocab_size=128, hidden_size=64, intermediate_size=96, moe_intermediate_size=25,
        num_attention_heads=4, num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=16, qk_rope_head_dim=8,
        qk_nope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=None,
        num_hidden_layers=2, first_k_dense_replace=1,
    )
    check, _ = check_merge(config, ("all-linear",), device="cpu", replica=True)
    assert check.status == "passed", check.note
    assert "the config leaves num_experts_per_tok unset" in check.materialised


def test_a_router_peft_wraps_but_cannot_run_is_not_applicable_with_the_reason() -> None:
    # Phi-MoE's router is an nn.Linear subclass returning a tuple; PEFT's all-linear selects every nn.Linear
    # (isinstance), so PEFT wraps it and its LoRA forward fails: PEFT's limit, never "error" nor "passed".
    config = AutoConfig.for_model(
        "phimoe", vocab_size=128, hidden_size=64, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=2, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
    )
    check, _ = check_merge(config, ("all-linear",), device="cpu")
    assert check.status == "not_applicable", check.note
    assert "PhimoeTopKRouter" in check.note and "'tuple' object has no attribute 'dtype'" in check.note
    walk_through, _ = check_merge(config, QKVO, device="cpu")
    assert walk_through.status == "passed", walk_through.note


def test_doge_residual_scales_are_filled_near_one_as_doge_initialises_them() -> None:
    # DogeDecoderLayer: input_residual = nn.Parameter(torch.ones(hidden_size)), likewise post_attention_residual.
    # Filled near 0 they made the random 32-layer model amplify rounding and fail q/k/v/o by 0.087.
    config = AutoConfig.for_model("doge", vocab_size=128, hidden_size=64, intermediate_size=96,
                                  num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)
    model = materialise(config, "cpu", torch.float32, PatternFill("cpu", torch.float32))
    residuals = [param for name, param in model.named_parameters() if name.endswith("residual")]
    assert len(residuals) == 4  # two per layer
    for param in residuals:
        assert (param - 1).abs().max().item() <= 0.03 + 1e-6  # 1 + U(-0.03, 0.03)


def test_longcat_zero_computation_experts_are_cut_with_the_routed_ones() -> None:
    # LongCat's gate_up_proj has a row block per routed *and* zero-computation expert (n_routed_experts +
    # zero_expert_num), so its one-layer replica was 28.5 GiB with 256 zero experts left in.
    config = AutoConfig.for_model("longcat_flash", n_routed_experts=16, zero_expert_num=8, moe_topk=4)
    shrunk = shrink_config(config, 4).config
    assert (shrunk.n_routed_experts, shrunk.zero_expert_num, shrunk.moe_topk) == (4, 4, 2)


def test_gemma4_per_layer_inputs_are_cut_with_the_layers() -> None:
    # Gemma 4's per-layer input embedding has num_hidden_layers * hidden_size_per_layer_input features and its
    # forward reshapes them per layer: a replica of fewer layers failed "shape ... is invalid".
    config = AutoConfig.for_model(
        "gemma4_text", vocab_size=128, vocab_size_per_layer_input=128, hidden_size=64, intermediate_size=96,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=16, num_hidden_layers=3,
        hidden_size_per_layer_input=8, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
        num_kv_shared_layers=0,
    )
    check, _ = check_merge(config, QKVO, device="cpu", replica=True)
    assert check.status == "passed", check.note
    assert "2 of 3 layers" in check.materialised


def test_mllama_cross_attention_layer_indices_follow_the_kept_layers() -> None:
    # Mllama's text model skips the layers listed in cross_attention_layers for a text batch, by position: with
    # layer 2 kept as the replica's second layer, [2] must become [1] or the layer runs without vision states.
    config = AutoConfig.for_model(
        "mllama",
        text_config=dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                         num_key_value_heads=2, num_hidden_layers=3, cross_attention_layers=[2], pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_global_layers=1,
                           attention_heads=2, image_size=32, patch_size=8, vision_output_dim=64,
                           intermediate_layers_indices=[0]),
    )
    check, _ = check_merge(config, QKVO, device="cpu", replica=True)
    assert check.status == "passed", check.note
    assert "never ran in the forward pass (first: model.layers.1.cross_attn" in check.note  # skipped, as by Mllama


def test_gemma3n_replica_keeps_the_layers_that_store_the_shared_keys_and_values() -> None:
    # Gemma 3n's last num_kv_shared_layers layers reuse the keys and values their layer type's last earlier
    # layer stores (config.kv_sharing_modes, a property): a replica without the storing layers raised KeyError.
    config = AutoConfig.for_model(
        "gemma3n_text", vocab_size=128, vocab_size_per_layer_input=128, hidden_size=64, intermediate_size=96,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_hidden_layers=10,
        hidden_size_per_layer_input=8, layer_types=["sliding_attention", "full_attention"] * 5,
        num_kv_shared_layers=4, laurel_rank=8, activation_sparsity_pattern=[0.0] * 10, altup_num_inputs=2,
    )
    assert config.kv_sharing_modes == [None] * 4 + ["store"] * 2 + ["reuse"] * 4  # transformers' own rule
    check, _ = check_merge(config, QKVO, device="cpu", replica=True)
    assert check.status == "passed", check.note
    assert "6 of 10 layers" in check.materialised and "/store" in check.materialised


def test_zamba2_hybrid_layer_ids_follow_the_kept_layers() -> None:
    # Zamba2's shared blocks look their adapters up by layer position in a dict built from hybrid_layer_ids
    # (layer_dic): with the hybrid layer 2 kept as the replica's second layer, the lookup of 1 raised KeyError.
    config = AutoConfig.for_model(
        "zamba2", vocab_size=128, hidden_size=64, intermediate_size=96, num_attention_heads=4,
        num_key_value_heads=4, num_hidden_layers=5, layers_block_type=["mamba", "mamba", "hybrid", "mamba", "hybrid"],
        mamba_d_state=8, mamba_headdim=16, n_mamba_heads=8, mamba_ngroups=1, num_mem_blocks=1,
        use_shared_attention_adapter=True, adapter_rank=8, use_mem_rope=False,
    )
    assert config.hybrid_layer_ids == [2, 4]  # transformers' own rule
    check, _ = check_merge(config, ("all-linear",), device="cpu", replica=True)
    assert check.status == "passed", check.note
    assert "2 of 5 layers" in check.materialised


def test_large_weights_are_made_on_meta_while_a_model_is_built_and_large_buffers_are_not_lost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Llama 4's experts are nn.Parameter(torch.zeros(experts, hidden, 2 * intermediate)): built for every layer
    # on CPU before the replica cut them. The build now makes them on meta; small tensors and those given a
    # device stay real.
    from reportgen.materialise import LARGE, _build_on_meta, _large_tensors_on_meta, _meta_besides_parameters

    with _large_tensors_on_meta():
        large, small, sized = torch.zeros(LARGE), torch.ones(LARGE - 1), torch.empty(size=(2, LARGE // 2))
        full, placed = torch.full((2, LARGE), 1.0), torch.empty(2, LARGE // 2, device="cpu")
    assert large.is_meta and sized.is_meta and full.is_meta and not small.is_meta and not placed.is_meta
    assert not torch.zeros(LARGE).is_meta  # the constructors are restored

    class Masked(torch.nn.Module):  # a causal-mask table as a buffer (GPT-2 once kept one of 1024 x 1024)
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("bias", torch.tril(torch.ones(1024, 1024)))

    with _large_tensors_on_meta():
        masked = Masked()
    assert _meta_besides_parameters(masked) and not _meta_besides_parameters(Masked())

    # A tiny Llama 4 whose experts (4 x 64 x 256 = LARGE values) are zeroed by their own __init__: the
    # constructor is asked for them on meta (seen by a spy beneath the patch), and materialise fills them.
    asked: list[object] = []
    zeros = torch.zeros

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        asked.append((args, kwargs.get("device")))
        return zeros(*args, **kwargs)  # type: ignore[arg-type]

    config = AutoConfig.for_model("llama4_text", hidden_size=64, intermediate_size=128, intermediate_size_mlp=256,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                  num_local_experts=4, vocab_size=512)
    monkeypatch.setattr(torch, "zeros", spy)
    _build_on_meta(config, False, large_on_meta=True)
    monkeypatch.undo()
    assert ((4, 64, 256), "meta") in asked  # each layer's gate_up_proj, never allocated
    model = materialise(config, "cpu", torch.float32, PatternFill("cpu", torch.float32))
    experts = next(p for name, p in model.named_parameters() if "experts.gate_up_proj" in name)
    assert experts.device.type == "cpu" and experts.abs().max() > 0  # real and filled, not meta


def test_modules_peft_refuses_on_a_mamba_model_are_left_out_and_the_rest_is_checked() -> None:
    # PEFT refuses LoRA on a Mamba model's out_proj and conv1d (tuners_utils._check_lora_target_modules_mamba:
    # "Incompatible modules: {'conv1d', 'out_proj'}"), so all-linear was not applicable on every Mamba model and
    # its merge never checked. in_proj and x_proj are PEFT's to adapt: checked without the two it refuses.
    config = AutoConfig.for_model("mamba2", vocab_size=128, hidden_size=64, state_size=16, num_heads=8, head_dim=16,
                                  n_groups=1, num_hidden_layers=2, expand=2)
    check, printout = check_merge(config, ("all-linear",), device="cpu")
    assert check.status == "passed", check.note
    # all-linear reaches out_proj (an nn.Linear), never conv1d (an nn.Conv1d): only out_proj is named as left out.
    assert "PEFT refuses LoRA on out_proj of this model, so it is left out" in check.note
    assert "Incompatible modules: {'conv1d', 'out_proj'}" in check.note  # PEFT's words, its set in sorted order
    # Only out_proj asked for: nothing of PEFT's to adapt is left, so not applicable with PEFT's reason.
    refused, _ = check_merge(config, ("out_proj",), device="cpu")
    assert refused.status == "not_applicable" and "is incompatible with Mamba-based models" in refused.note
