"""Training memory of full fine-tuning, LoRA and QLoRA (issue 6), against hand calculations and accelerate.

Every expected figure is written out here from the model's published
dimensions, the papers' formulas, or accelerate's own size computation on the
same meta model; none is taken from reportgen's output.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from accelerate.utils import CustomDtype, compute_module_sizes
from accelerate.utils.modeling import compute_module_total_buffer_size
from torch import nn

from reportgen.build import Built, build, build_meta_model, load_config
from reportgen.data import MemoryAssumptions, MemoryRow, ModelReport
from reportgen.analyse import Analysis, analyse
from reportgen.memory import estimate
from reportgen.peft_count import Counted, count
from reportgen.variants import DEFAULT_VARIANTS
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec, resolve
from tests.families import study_report, tiny_config
from tests.test_published_totals import PUBLISHED_TOTALS

if TYPE_CHECKING:
    from tests.conftest import Cli

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
GIB = 2**30

# Llama-3.1-8B-Instruct, from its config.json: 32 layers, hidden 4096, 32 heads of 128, 8 kv heads,
# intermediate 14336, vocabulary 128256, untied embeddings; its published parameter total.
L, H, HEADS, KV, D, I, V = 32, 4096, 32, 8, 128, 14336, 128_256
LLAMA_8B_PARAMS = PUBLISHED_TOTALS[LLAMA_8B]  # 8,030,261,248
# (out, in) of the seven projections of one layer.
PROJECTIONS = {
    "q_proj": (HEADS * D, H), "k_proj": (KV * D, H), "v_proj": (KV * D, H), "o_proj": (H, HEADS * D),
    "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I),
}


@pytest.fixture(scope="module")
def llama() -> ModelReport:
    return analyse_spec(ModelSpec(LLAMA_8B, "test"), "llama", Study(ranks=(8, 16), merge_check=False))


def headline(report: ModelReport, method: str) -> MemoryRow:
    (row,) = [row for row in report.memory_headline if row.method == method]
    return row


@functools.lru_cache(maxsize=1)
def stages(model_id: str, ranks: tuple[int, ...]) -> tuple[Built, Analysis, Counted]:
    """The build, analysis and counts of one model, once: the estimate is then redone under other assumptions."""
    built = build(resolve(ModelSpec(model_id, "test")))
    analysis = analyse(built)
    return built, analysis, count(built, analysis, ranks, DEFAULT_VARIANTS)


def rows_with(report: ModelReport, assumptions: MemoryAssumptions) -> dict[str, MemoryRow]:
    """The headline rows of the same counted cells under other assumptions (PEFT counts once)."""
    built, analysis, counted = stages(report.model.id, report.ranks)
    rows = estimate(analysis, counted, built.config, assumptions, report.ranks)
    return {row.method: row for row in rows if row.headline}


def test_bf16_weights_are_two_bytes_per_published_parameter(llama: ModelReport) -> None:
    full = headline(llama, "full")
    assert full.weight_bytes == LLAMA_8B_PARAMS * 2 == 16_060_522_496
    assert round(full.weight_bytes / 1e9, 2) == 16.06
    assert headline(llama, "lora").frozen_weight_bytes == 16_060_522_496


def test_lora_all_linear_r16_trains_41943040(llama: ModelReport) -> None:
    # r * (m + n) per projection per layer: 16 * 32 * [(4096+4096) + 2*(1024+4096) + (4096+4096) + 3*(14336+4096)]
    #                                      = 16 * 32 * 81,920 = 41,943,040
    by_hand = 16 * L * sum(out + inp for out, inp in PROJECTIONS.values())
    assert by_hand == 16 * 32 * 81_920 == 41_943_040
    lora, qlora = headline(llama, "lora"), headline(llama, "qlora")
    assert (lora.scenario, lora.rank) == ("all_linear", 16)  # the largest rank of the study
    assert lora.trainable_params == qlora.trainable_params == 41_943_040
    # fp32 adapters (PEFT upcasts): 4 bytes of weight, 4 of gradient, 8 of AdamW state per parameter.
    assert lora.trainable_weight_bytes == lora.gradient_bytes == 4 * 41_943_040
    assert lora.optimizer_bytes == 8 * 41_943_040


def test_qlora_nf4_weights_by_hand(llama: ModelReport) -> None:
    qlora = headline(llama, "qlora")
    assert 4.5e9 <= qlora.weight_bytes <= 6.5e9
    # Quantised: the seven projections of 32 layers; kept in bf16: embeddings, head and norms.
    quantised = L * sum(out * inp for out, inp in PROJECTIONS.values())
    assert quantised == 6_979_321_856
    kept = 2 * V * H + H * (2 * L + 1)  # embed_tokens, lm_head, two norms per layer and the final norm
    assert kept == LLAMA_8B_PARAMS - quantised
    # NF4: 4 bits per weight; double quantisation: one 8-bit absmax per 64 weights, one fp32 per 256 absmax.
    blocks = {name: out * inp // 64 for name, (out, inp) in PROJECTIONS.items()}
    constants = L * sum(n + math.ceil(n / 256) * 4 for n in blocks.values())
    assert qlora.quantisation_bytes == constants
    assert qlora.frozen_weight_bytes == quantised // 2 + constants + kept * 2
    assert qlora.weight_bytes == qlora.frozen_weight_bytes + 4 * 41_943_040


def test_qlora_without_double_quantisation_stores_fp32_absmax(llama: ModelReport) -> None:
    qlora = rows_with(llama, MemoryAssumptions(double_quant=False))["qlora"]
    # QLoRA sec. 3: 32 bits per 64 weights = 0.5 bits per parameter.
    assert qlora.quantisation_bytes == 6_979_321_856 // 64 * 4


def test_full_adamw_optimizer_state(llama: ModelReport) -> None:
    full = headline(llama, "full")
    assert full.optimizer_bytes >= 8 * LLAMA_8B_PARAMS
    # ZeRO sec. 3.1, mixed-precision Adam: fp32 master, m and v: 12 bytes per parameter; bf16 gradients 2.
    assert full.optimizer_bytes == 12 * LLAMA_8B_PARAMS
    assert full.gradient_bytes == 2 * LLAMA_8B_PARAMS
    fp32 = rows_with(llama, MemoryAssumptions(base_dtype="fp32"))["full"]
    assert fp32.weight_bytes == fp32.gradient_bytes == 4 * LLAMA_8B_PARAMS
    assert fp32.optimizer_bytes == 8 * LLAMA_8B_PARAMS  # no master copy when the weights are fp32


def test_adamw_8bit_state(llama: ModelReport) -> None:
    rows = rows_with(llama, MemoryAssumptions(optimizer="adamw-8bit"))
    # Two 8-bit states with one fp32 absmax per 2048 values: 41,943,040 / 2048 = 20,480 blocks.
    assert rows["lora"].optimizer_bytes == 2 * (41_943_040 + 20_480 * 4)
    # Full fine-tuning keeps its fp32 master weights beside the 8-bit states.
    assert rows["full"].optimizer_bytes == 2 * (LLAMA_8B_PARAMS + math.ceil(LLAMA_8B_PARAMS / 2048) * 4) + (
        4 * LLAMA_8B_PARAMS
    )


def test_totals_order_and_gpu_fit(llama: ModelReport) -> None:
    full, lora, qlora = (headline(llama, method) for method in ("full", "lora", "qlora"))
    assert full.total_bytes > lora.total_bytes > qlora.total_bytes
    # 16 bytes per parameter (ZeRO) alone is 128.5e9 bytes, more than 80 GiB (85.9e9 bytes).
    assert full.total_bytes > 16 * LLAMA_8B_PARAMS > 80 * GIB
    assert full.fits_gib == ()
    # QLoRA of an 8B model on a 24 GB card is the paper's point; its weights alone are under 6.5e9 bytes.
    assert qlora.fits_gib == (24, 40, 80)
    for row in llama.memory:
        assert row.total_bytes == (
            row.weight_bytes + row.gradient_bytes + row.optimizer_bytes + row.activation_bytes
        )


def activations_by_hand(full: bool, rank: int = 16) -> int:
    """Llama-3.1-8B's activations at the defaults (sequence 2048, batch 1, checkpointing, SDPA), written out.

    From what transformers 5.23 and PEFT 0.21 keep for the backward, op by op (measured on CPU in
    tests/test_memory_measure.py): per token, bytes.
    """
    t = 2048
    layer_inputs = L * 2 * t * H  # the checkpoint keeps every layer's 16-bit input
    rotary = 2 * t * D * 2  # cos and sin, bf16, one copy for all layers
    # One layer recomputed. RMSNorm: its fp32 input and 1/rms; full fine-tuning also keeps x_normed (weight * x_normed).
    norms = 2 * (4 * H + 4 + (2 * H if full else 0))
    sdpa = 2 * (2 * HEADS * D + 2 * KV * D) + 4 * HEADS  # q, k, v (kv heads), output; fp32 logsumexp per head
    mlp = 2 * 3 * I  # gate's output (SiLU's input), act(gate) and up's output (the product's inputs)
    if full:  # each trainable Linear keeps its 16-bit input once per tensor; o_proj's is SDPA's output (kept above)
        linear = 2 * H + 2 * H + 2 * I
    else:  # PEFT casts each adapted module's input to fp32 (own copy), and keeps x A (fp32, r wide) for B
        linear = 4 * (3 * H + HEADS * D + 2 * H + I) + 7 * 4 * rank
    layer = t * (norms + sdpa + mlp + linear)
    # The final norm, the head's input (trained by full fine-tuning) and the loss's fp32 log-probabilities.
    head = t * (4 * H + 4 + (2 * H + 2 * H if full else 0) + 4 * V)
    loss_buffers = 8 * t * V  # backward: nll_loss's gradient of the log-probabilities, log_softmax's of the logits
    return layer_inputs + rotary + layer + head + loss_buffers


def test_activations_with_checkpointing_by_hand(llama: ModelReport) -> None:
    assert headline(llama, "lora").activation_bytes == activations_by_hand(full=False)
    assert headline(llama, "full").activation_bytes == activations_by_hand(full=True)
    assert headline(llama, "lora").loss_buffer_bytes == 8 * 2048 * V


def test_qlora_keeps_what_lora_keeps_unless_bitsandbytes_predates_0_43_2(llama: ModelReport) -> None:
    # bitsandbytes 0.43.2 and later keep no 4-bit Linear's input (measured on CPU with bitsandbytes 0.50.2 in
    # tests/test_memory_measure.py): QLoRA's activations are LoRA's.
    assert headline(llama, "qlora").activation_bytes == activations_by_hand(full=False)
    # Before 0.43.2 MatMul4Bit kept its input on its context. In the recomputed layer: the 16-bit input of
    # q/k/v (4096 wide), of gate/up (4096) and of down (14336), each tensor once; o_proj's is SDPA's output, kept
    # already. Every adapted module keeps its own fp32 copy beside it (PEFT's cast), so nothing is shared.
    # And the checkpoint cannot drop what sits on a context: every layer's four inputs from the forward stay
    # (o_proj's too: under the checkpoint nothing else keeps SDPA's output).
    old = rows_with(llama, MemoryAssumptions(bnb_keeps_inputs=True))
    recomputed = 2048 * 2 * (H + H + I)
    forward = L * 2048 * 2 * (H + HEADS * D + H + I)
    assert old["qlora"].activation_bytes == activations_by_hand(full=False) + recomputed + forward
    assert old["lora"].activation_bytes == activations_by_hand(full=False)  # LoRA has no 4-bit Linear


def test_prepare_model_for_kbit_training_makes_qlora_fp32_by_hand(llama: ModelReport) -> None:
    qlora = rows_with(llama, MemoryAssumptions(prepare_kbit=True))["qlora"]
    # PEFT's prepare_model_for_kbit_training upcasts every parameter not in 4 bits to fp32: the embeddings and the
    # untied head (128256 x 4096 each) and the 65 norms of 4096; the 4-bit weights and their constants are as before.
    quantised = L * sum(out * inp for out, inp in PROJECTIONS.values())
    kept = 2 * V * H + 65 * H
    assert kept == LLAMA_8B_PARAMS - quantised
    plain = headline(llama, "qlora")
    assert qlora.frozen_weight_bytes == plain.frozen_weight_bytes + 2 * kept  # 4 bytes instead of 2
    # The hidden states are fp32 from the embeddings on, so every activation is 4 bytes; the fp32 adapters read
    # their fp32 input as it is, so the tensor each group of Linears reads is kept once (o_proj's is SDPA's output).
    t = 2048
    layer_inputs = L * 4 * t * H
    rotary = 2 * t * D * 4
    norms = 2 * (4 * H + 4)
    sdpa = 4 * (2 * HEADS * D + 2 * KV * D) + 4 * HEADS
    mlp = 4 * 3 * I
    linear = 4 * (H + H + I) + 7 * 4 * 16  # q/k/v's input, gate/up's, down's; x A (fp32, r = 16) for each of 7
    head = t * (4 * H + 4 + 4 * V)
    expected = layer_inputs + rotary + t * (norms + sdpa + mlp + linear) + head + 8 * t * V
    assert qlora.activation_bytes == expected


def test_lora_total_by_hand(llama: ModelReport) -> None:
    trainable = 41_943_040
    # bf16 frozen weights; fp32 adapter weights, gradients (4 bytes each) and AdamW m and v (8); activations.
    expected = 2 * LLAMA_8B_PARAMS + (4 + 4 + 8) * trainable + activations_by_hand(full=False)
    assert headline(llama, "lora").total_bytes == expected


def test_eager_attention_keeps_the_scores(llama: ModelReport) -> None:
    sdpa, eager = headline(llama, "full"), rows_with(llama, MemoryAssumptions(attention="eager"))["full"]
    t, s = 2048, 2048
    # One recomputed layer: eager keeps k and v repeated to 32 heads (not SDPA's 8), the fp32 softmax (4 bytes per
    # score) and its bf16 copy (2), o_proj's own input; SDPA keeps its output and an fp32 logsumexp instead.
    eager_layer = 2 * 3 * HEADS * D + HEADS * s * (4 + 2) + 2 * HEADS * D
    sdpa_layer = 2 * (2 * HEADS * D + 2 * KV * D) + 4 * HEADS
    mask = s * s * 2  # the checkpoint holds eager's 4-D causal mask (bf16) as a layer input
    assert eager.activation_bytes - sdpa.activation_bytes == t * (eager_layer - sdpa_layer) + mask


def test_trainable_side_dtypes(llama: ModelReport) -> None:
    trainable = 41_943_040
    base = rows_with(llama, MemoryAssumptions(adapter_dtype="base"))["lora"]
    # bf16 adapters: 2 bytes of weight and gradient; torch's AdamW allocates m and v like the parameter: 2 + 2.
    assert base.trainable_weight_bytes == base.gradient_bytes == 2 * trainable
    assert base.optimizer_bytes == 4 * trainable
    # Full fine-tuning in bf16 (litgpt, torchtune): 2 + 2 + 4 bytes per parameter, no master copy.
    full = rows_with(llama, MemoryAssumptions(full_precision="bf16"))["full"]
    assert (full.weight_bytes, full.gradient_bytes, full.optimizer_bytes) == (
        2 * LLAMA_8B_PARAMS, 2 * LLAMA_8B_PARAMS, 4 * LLAMA_8B_PARAMS)


def test_paged_optimizer_states_are_outside_the_allocator(llama: ModelReport) -> None:
    rows = rows_with(llama, MemoryAssumptions(optimizer="paged-adamw"))
    # bitsandbytes' 32-bit paged AdamW: fp32 m and v in CUDA unified memory, which max_memory_allocated never sees.
    assert rows["lora"].optimizer_bytes == rows["lora"].paged_bytes == 8 * 41_943_040
    assert rows["lora"].allocated_bytes == rows["lora"].total_bytes - 8 * 41_943_040
    # Full fine-tuning's fp32 master copy is a plain PyTorch tensor: only m and v are paged.
    assert rows["full"].paged_bytes == 8 * LLAMA_8B_PARAMS
    eight = rows_with(llama, MemoryAssumptions(optimizer="paged-adamw-8bit"))["lora"]
    assert eight.paged_bytes == eight.optimizer_bytes == 2 * (41_943_040 + 20_480 * 4)


def test_gpu_sizes_and_headroom(llama: ModelReport) -> None:
    qlora = headline(llama, "qlora")
    rows = rows_with(llama, MemoryAssumptions(gpu_sizes_gib=(8, 16, 48), headroom_gib=2.0))
    # The fit marks leave the headroom free: total + 2 GiB must be at most the GPU's memory.
    assert rows["qlora"].fits_gib == tuple(size for size in (8, 16, 48) if qlora.total_bytes + 2 * GIB <= size * GIB)
    assert rows["qlora"].headroom_bytes == 2 * GIB


def test_cross_check_weights_with_accelerate(llama: ModelReport) -> None:
    model = build_meta_model(load_config(resolve(ModelSpec(LLAMA_8B, "test"))))
    # As `accelerate estimate-memory` does: sizes of an fp32 model, which compute_module_sizes casts down.
    model = model.to(torch.float32)
    for dtype, base_dtype in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        params_only = compute_module_sizes(model, dtype=dtype)[""] - compute_module_total_buffer_size(model, dtype)
        assert rows_with(llama, MemoryAssumptions(base_dtype=base_dtype))["full"].weight_bytes == params_only
    # NF4 data at half a byte per weight (accelerate's INT4), everything outside the blocks' Linear in bf16.
    keep = {
        f"{module_name}.{param_name}": "bfloat16"
        for module_name, module in model.named_modules()
        for param_name, _ in module.named_parameters(recurse=False)
        if not (isinstance(module, nn.Linear) and ".layers." in module_name and param_name == "weight")
    }
    nf4_sizes = compute_module_sizes(model, dtype=CustomDtype.INT4, special_dtypes=keep)[""]
    nf4_buffers = compute_module_total_buffer_size(model, dtype=CustomDtype.INT4)
    qlora = headline(llama, "qlora")
    assert qlora.frozen_weight_bytes - qlora.quantisation_bytes == nf4_sizes - nf4_buffers


def test_gpt2_eager_without_checkpointing_is_korthikantis_formula(write_config: Callable[..., Path]) -> None:
    # GPT-2 is the paper's layer: multi-head attention, a 4h GELU MLP, LayerNorm, dropout (0.1 in its config).
    gpt2 = tiny_config("gpt2")
    h, a, layers, vocab, s, b = gpt2["n_embd"], gpt2["n_head"], gpt2["n_layer"], gpt2["vocab_size"], 32, 3
    memory = MemoryAssumptions(seq_len=s, batch_size=b, grad_checkpointing=False, attention="eager")
    report = study_report(write_config(family="gpt2"), ranks=(4,), memory=memory)
    full = headline(report, "full")
    per_layer = s * b * h * (34 + 5 * a * s // h)  # Korthikanti et al. 2022, eq. (1), bytes in 16-bit
    assert 5 * a * s % h == 0
    # What transformers keeps beyond the paper, per token and layer: the fp32 softmax beside its 16-bit copy
    # (4 more bytes per score), and LayerNorm's fp32 mean and rstd (8 bytes per norm, two norms).
    beyond = s * b * (4 * a * s + 2 * 8)
    # Outside the layers: the final LayerNorm (input, mean, rstd), the trained head's input, the fp32
    # log-probabilities of the loss; then its two fp32 buffers in the backward.
    head = s * b * (2 * h + 8 + 2 * h + 4 * vocab) + 8 * s * b * vocab
    assert full.activation_bytes == layers * (per_layer + beyond) + head


def test_mixtral_activations_count_the_active_experts(write_config: Callable[..., Path]) -> None:
    mixtral = tiny_config("mixtral")  # no attention dropout: Mixtral's default is 0.0
    h, heads, kv, inter, layers, vocab = (mixtral[key] for key in (
        "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size", "num_hidden_layers",
        "vocab_size"))
    experts, top_k, s = mixtral["num_local_experts"], mixtral["num_experts_per_tok"], 16
    memory = MemoryAssumptions(seq_len=s, grad_checkpointing=False)
    report = study_report(write_config(family="mixtral"), ranks=(4,), memory=memory)
    d = h // heads
    norms = 2 * (4 * h + 4 + 2 * h)  # two RMSNorms: fp32 input, 1/rms, x_normed (their weights train)
    attention = 2 * (2 * heads * d + 2 * kv * d) + 4 * heads  # SDPA: q, k, v, output, fp32 logsumexp
    # Per active expert: its copy of the input (the Linear's input), gate, act, up, the product (down's input);
    # the router logits; q/k/v's input (o_proj's is SDPA's output).
    mlp = top_k * (2 * h + 2 * 3 * inter + 2 * inter) + 2 * experts
    per_token_layer = norms + attention + mlp + 2 * h
    rotary = 2 * s * d * 2
    head = s * (4 * h + 4 + 2 * h + 2 * h + 4 * vocab) + 8 * s * vocab
    assert headline(report, "full").activation_bytes == layers * s * per_token_layer + rotary + head


def test_report_json_memory_through_the_cli(tmp_path: Path, run_cli: Cli) -> None:
    result = run_cli.report(tmp_path, [SMOLLM2], "--no-merge-check", "--ranks", "8", "--seq-len", "512",
                            "--batch-size", "2", "--no-grad-checkpointing", "--optimizer", "adamw-8bit",
                            "--base-dtype", "fp32")
    assert result.exit_code == 0, result.output
    report = run_cli.report_json(tmp_path / "out", SMOLLM2)
    contract = {"method", "scenario", "rank", "weight_bytes", "trainable_params", "gradient_bytes",
                "optimizer_bytes", "activation_bytes", "total_bytes"}
    assert all(contract <= set(row) for row in report["memory"])
    assert [row["method"] for row in report["memory"] if row["headline"]] == ["full", "lora", "qlora"]
    full = report["memory"][0]
    assert full["weight_bytes"] == 4 * PUBLISHED_TOTALS[SMOLLM2]  # fp32, the published parameter count
    stated = {item["name"]: item["value"] for item in report["memory_assumptions"]}
    assert (stated["seq_len"], stated["batch_size"], stated["grad_checkpointing"]) == ("512", "2", "off")
    assert (stated["optimizer"], stated["base_dtype"]) == ("adamw-8bit", "fp32")
    assert all(item["source"] for item in report["memory_assumptions"])
    assert (stated["qlora_weights"], stated["qlora_inputs"]) == ("NF4, block 64, double quantisation on", "not kept")


def test_qlora_options_through_the_cli(tmp_path: Path, run_cli: Cli) -> None:
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    plain = run_cli.report(tmp_path / "a", [SMOLLM2], "--no-merge-check", "--ranks", "8")
    old = run_cli.report(tmp_path / "b", [SMOLLM2], "--no-merge-check", "--ranks", "8", "--no-double-quant",
                         "--bnb-keeps-inputs", "--prepare-kbit")
    assert plain.exit_code == old.exit_code == 0, (plain.output, old.output)
    rows = [{row["method"]: row for row in run_cli.report_json(folder / "out", SMOLLM2)["memory"] if row["headline"]}
            for folder in (tmp_path / "a", tmp_path / "b")]
    stated = {item["name"]: item["value"] for item in run_cli.report_json(tmp_path / "b" / "out", SMOLLM2)[
        "memory_assumptions"]}
    assert stated["qlora_weights"] == "NF4, block 64, double quantisation off"
    assert stated["qlora_inputs"] == "kept (bitsandbytes before 0.43.2)"
    assert stated["qlora_prepare"] == "prepare_model_for_kbit_training"
    assert rows[1]["lora"] == rows[0]["lora"]  # neither option touches LoRA
    assert rows[1]["qlora"]["activation_bytes"] > rows[0]["qlora"]["activation_bytes"]
    # By hand, SmolLM2-135M: 30 layers of q, o (576 x 576), k, v (192 x 576), gate, up, down (1536 x 576) in
    # 4 bits: 106,168,320 weights; the other 28,346,688 (tied embeddings, norms) go from 2 to 4 bytes
    # (--prepare-kbit). NF4 absmax per 64 weights, per matrix: q and o 5184 blocks, k and v 1728, the MLP's 13824.
    # Double quantisation: a byte per block plus 4 bytes per 256 blocks (rounded up: 21, 7 and 54 constants);
    # without it 4 bytes per block.
    kept = 134_515_008 - 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576)
    with_dq = 30 * (2 * (5184 + 21 * 4) + 2 * (1728 + 7 * 4) + 3 * (13824 + 54 * 4))
    without_dq = 30 * 4 * (2 * 5184 + 2 * 1728 + 3 * 13824)
    assert kept == 28_346_688
    assert rows[1]["qlora"]["weight_bytes"] - rows[0]["qlora"]["weight_bytes"] == 2 * kept + without_dq - with_dq


def test_an_unknown_optimizer_is_a_usage_error(run_cli: Cli) -> None:
    result = run_cli("inspect", LLAMA_8B, "--optimizer", "sgd")
    assert result.exit_code == 2
    assert "'sgd' is not one of 'adamw', 'adamw-8bit', 'paged-adamw', 'paged-adamw-8bit'" in result.output


def test_inspect_prints_the_memory_table_and_its_assumptions(run_cli: Cli) -> None:
    result = run_cli("inspect", SMOLLM2, "--ranks", "8")
    assert result.exit_code == 0, result.output
    memory = result.output.split("Training memory (GB = 1e9 bytes)")[1]
    table, assumptions = memory.split("Assumptions")
    assert [line.split()[0] for line in table.strip().splitlines()[1:4]] == ["full", "lora", "qlora"]
    # SmolLM2-135M in bf16: its published 134,515,008 parameters * 2 bytes = 0.27 GB of weights.
    assert table.strip().splitlines()[1].split()[4] == "0.27"
    assert "Korthikanti et al. 2022" in assumptions and "Dettmers et al. 2023, QLoRA" in assumptions


def test_memory_scenario_and_rank_choose_the_headline_rows(run_cli: Cli) -> None:
    result = run_cli("inspect", SMOLLM2, "--ranks", "8,16", "--memory-scenario", "qkvo", "--memory-rank", "8")
    assert result.exit_code == 0, result.output
    table = result.output.split("Training memory (GB = 1e9 bytes)")[1].split("Assumptions")[0]
    rows = [line.split()[:3] for line in table.strip().splitlines()[1:4]]
    assert rows == [["full", "all_parameters", "-"], ["lora", "qkvo", "8"], ["qlora", "qkvo", "8"]]
    bad = run_cli("inspect", SMOLLM2, "--attention", "flash")
    assert bad.exit_code == 2 and "'flash' is not one of 'sdpa', 'eager'" in bad.output


def test_a_headline_rank_outside_the_study_is_a_usage_error_and_an_unknown_scenario_is_said(run_cli: Cli) -> None:
    bad = run_cli("inspect", SMOLLM2, "--ranks", "8,16", "--memory-rank", "32")
    assert bad.exit_code == 2 and "--memory-rank 32 is not a rank of the study (--ranks 8,16)" in bad.output
    assert "Training memory" not in bad.output  # before any work
    # SmolLM2 (Llama) has no module called c_attn (GPT-2's): the note says so before the run, the report after it.
    odd = run_cli("inspect", SMOLLM2, "--ranks", "8", "--memory-scenario", "c_attn")
    assert odd.exit_code == 0, odd.output
    assert "note: --memory-scenario 'c_attn' is not a scenario of the study (qv_only, qkvo, all_linear)" in odd.output
    warnings = odd.output[odd.output.index("\nWarnings ("):]  # and the printout ends with the model's warning
    assert "--memory-scenario 'c_attn' is not a scenario of this model" in warnings
    report = analyse_spec(ModelSpec(SMOLLM2, SMOLLM2), "smollm2", Study(ranks=(8,), merge_check=False,
                          memory=MemoryAssumptions(scenario="c_attn")))
    assert any("--memory-scenario 'c_attn' is not a scenario of this model" in line for line in report.warnings)
    assert not any(row.headline for row in report.memory if row.method != "full")
