"""Zoo families that used to break, shrunk: PEFT's refusals, composite configs, attention-free models, MLA.

Each config is transformers' own default for the model type with tiny widths
(``AutoConfig.for_model(model_type, **TINY[...])``), written to a config.json
with ``architectures`` from transformers' causal-LM mapping, exactly as the zoo
writes it. Expected counts are hand calculations from the widths written here,
r * (out + in) per adapted matrix (r * E * (out + in) for E fused experts), or
PEFT's own words; never reportgen's output read back.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from reportgen import data
from reportgen.data import ModelReport, ModuleRow
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec

R = 8  # the one rank of every study here
H, VOCAB = 32, 128  # hidden width and vocabulary of every tiny language model

# DeepSeek-V3: 3 layers, the first dense (first_k_dense_replace=1), then MoE with 4 routed experts
# (fused gate_up_proj / down_proj), one shared expert and a router; multi-head latent attention.
DS_LAYERS, DS_HEADS, DS_INTER, DS_MOE_INTER, DS_EXPERTS = 3, 4, 48, 16, 4
DS_Q_LORA, DS_KV_LORA, DS_NOPE, DS_ROPE, DS_V = 24, 16, 8, 4, 8
DEEPSEEK = {
    "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": DS_LAYERS, "num_attention_heads": DS_HEADS,
    "num_key_value_heads": DS_HEADS, "intermediate_size": DS_INTER, "moe_intermediate_size": DS_MOE_INTER,
    "n_routed_experts": DS_EXPERTS, "num_experts_per_tok": 2, "n_shared_experts": 1, "first_k_dense_replace": 1,
    "n_group": 1, "topk_group": 1, "q_lora_rank": DS_Q_LORA, "kv_lora_rank": DS_KV_LORA,
    "qk_nope_head_dim": DS_NOPE, "qk_rope_head_dim": DS_ROPE, "v_head_dim": DS_V, "max_position_embeddings": 64,
}
# Falcon-H1: attention, a Mamba-2 mixer and a gated MLP in every one of 2 layers.
FH_LAYERS, FH_HEADS, FH_KV_HEADS, FH_INTER = 2, 4, 2, 48
FH_D_SSM, FH_SSM_HEADS, FH_STATE, FH_GROUPS = 16, 4, 8, 1
# BERT as a decoder: 2 layers, 4 heads, intermediate 48; cls.predictions.transform.dense outside the blocks.
BERT_LAYERS, BERT_INTER = 2, 48
# Gemma-3 multimodal: a 2-layer language model in text_config, a 1-layer SigLIP tower in vision_config.
G3_LAYERS, G3_HEADS, G3_KV_HEADS, G3_HEAD_DIM, G3_INTER = 2, 4, 2, 8, 48
VIS_HIDDEN, VIS_INTER, VIS_LAYERS = 16, 24, 1
# Mamba: no attention at all; d_inner = expand * hidden.
MAMBA_LAYERS, MAMBA_STATE, MAMBA_DT_RANK, MAMBA_INNER = 2, 8, 4, 2 * H
# Zamba2: 4 layers, layers 1 and 3 hybrid (a shared transformer block tied across them, a Linear, a Mamba-2
# mixer); the shared block's attention reads [hidden, embeddings], 2 * hidden wide.
Z_TYPES = ["linear_attention", "hybrid", "linear_attention", "hybrid"]
Z_HEADS, Z_INTER, Z_STATE, Z_SSM_HEADS, Z_ADAPTER = 4, 48, 8, 8, 4
# CTRL: 3 layers; attention Wq, Wk, Wv, dense; feed-forward ffn.0 and ffn.2 (a Sequential).
CTRL_LAYERS, CTRL_DFF = 3, 48
# Gemma-3n text: the intermediate size differs per layer (48 in layer 0, 64 in layer 1).
G3N_INTERS = (48, 64)

TINY: dict[str, tuple[str, dict[str, Any]]] = {
    "deepseek_v3": ("deepseek_v3", DEEPSEEK),
    "deepseek_v3_q_proj": ("deepseek_v3", DEEPSEEK | {"q_lora_rank": None, "num_hidden_layers": 2}),
    "falcon_h1": ("falcon_h1", {
        "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": FH_LAYERS, "num_attention_heads": FH_HEADS,
        "num_key_value_heads": FH_KV_HEADS, "intermediate_size": FH_INTER, "mamba_d_ssm": FH_D_SSM,
        "mamba_n_heads": FH_SSM_HEADS, "mamba_d_head": FH_D_SSM // FH_SSM_HEADS, "mamba_d_state": FH_STATE,
        "mamba_n_groups": FH_GROUPS, "mamba_chunk_size": 16, "max_position_embeddings": 64}),
    "bert": ("bert", {
        "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": BERT_LAYERS, "num_attention_heads": 4,
        "intermediate_size": BERT_INTER, "is_decoder": True, "max_position_embeddings": 64}),
    "gemma3": ("gemma3", {
        "text_config": {"vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": G3_LAYERS,
                        "num_attention_heads": G3_HEADS, "num_key_value_heads": G3_KV_HEADS,
                        "head_dim": G3_HEAD_DIM, "intermediate_size": G3_INTER, "max_position_embeddings": 64,
                        "sliding_window": 16},
        "vision_config": {"hidden_size": VIS_HIDDEN, "intermediate_size": VIS_INTER,
                          "num_hidden_layers": VIS_LAYERS, "num_attention_heads": 2, "image_size": 32,
                          "patch_size": 8, "vision_use_head": True},
        "mm_tokens_per_image": 4}),
    "mamba": ("mamba", {
        "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": MAMBA_LAYERS, "state_size": MAMBA_STATE,
        "expand": 2, "conv_kernel": 4, "time_step_rank": MAMBA_DT_RANK}),
    "zamba2": ("zamba2", {
        "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": len(Z_TYPES), "layers_block_type": Z_TYPES,
        "num_attention_heads": Z_HEADS, "intermediate_size": Z_INTER, "mamba_d_state": Z_STATE,
        "n_mamba_heads": Z_SSM_HEADS, "mamba_expand": 2, "mamba_ngroups": 1, "adapter_rank": Z_ADAPTER,
        "chunk_size": 16, "num_mem_blocks": 1, "use_shared_attention_adapter": False,
        "max_position_embeddings": 64}),
    "ctrl": ("ctrl", {"vocab_size": VOCAB, "n_embd": H, "n_layer": CTRL_LAYERS, "n_head": 4, "dff": CTRL_DFF,
                      "n_positions": 64}),
    "gemma3n_text": ("gemma3n_text", {
        "vocab_size": VOCAB, "vocab_size_per_layer_input": VOCAB, "hidden_size": H,
        "hidden_size_per_layer_input": 8, "intermediate_size": list(G3N_INTERS), "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
        "layer_types": ["sliding_attention", "full_attention"], "num_kv_shared_layers": 0, "laurel_rank": 4,
        "activation_sparsity_pattern": [0.0, 0.0], "altup_num_inputs": 2, "sliding_window": 16,
        "max_position_embeddings": 64}),
}
PARTS = {"language model", "head", "projector", "vision tower", "audio tower"}
PEFT_REFUSES = "not applicable: PEFT refuses this cell: "


def lora(out_features: int, in_features: int, experts: int = 1) -> int:
    """LoRA's A and B for one matrix at rank R (a fused (E, out, in) parameter: r * E * (out + in))."""
    return R * experts * (out_features + in_features)


def write_tiny(folder: Path, name: str) -> Path:
    """transformers' default config of the family with the tiny widths, as the zoo writes it."""
    model_type, overrides = TINY[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = AutoConfig.for_model(model_type, **overrides).to_dict()
    config["architectures"] = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    path = folder / name / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, default=str), encoding="utf-8")
    return path


Zoo = Callable[[str], tuple[ModelReport, Path]]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """Each family's report (at rank R, no merge check) and its config.json, made once for the module."""
    folder = tmp_path_factory.mktemp("zoo")
    made: dict[str, tuple[ModelReport, Path]] = {}

    def get(name: str) -> tuple[ModelReport, Path]:
        if name not in made:
            path = write_tiny(folder, name)
            report = analyse_spec(ModelSpec(text=str(path), origin="test"), name,
                                  Study(ranks=(R,), merge_check=False))
            made[name] = (report, path)
        return made[name]

    return get


def meta_model(path: Path) -> Any:
    """A fresh causal LM of the config.json at path, on the meta device."""
    config = json.loads(path.read_text())
    model_type = config.pop("model_type")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))


def peft_refusal(path: Path, **lora_options: Any) -> str:
    """PEFT's own message when it refuses this LoraConfig on the model of path (fails if PEFT accepts it)."""
    model = meta_model(path)
    with warnings.catch_warnings(), pytest.raises(Exception) as refused:
        warnings.simplefilter("ignore")
        get_peft_model(model, LoraConfig(r=R, **lora_options))
    return str(refused.value)


def shapes(report: ModelReport, part: str | None = None) -> dict[str, list[tuple[int, int]]]:
    """Row path -> its shapes (several where layers differ), in one part of the model or all."""
    found: dict[str, list[tuple[int, int]]] = {}
    for module in report.modules:
        if part is None or module.part == part:
            found.setdefault(module.path, []).append(module.shape)
    return found


def row(report: ModelReport, path: str, shape: tuple[int, int] | None = None) -> ModuleRow:
    matches = [r for r in report.modules if r.path == path and (shape is None or r.shape == shape)]
    assert len(matches) == 1, (path, shape, [(r.path, r.shape) for r in report.modules])
    return matches[0]


def assert_counted(report: ModelReport, scenario: str, expected: int) -> None:
    """The cell is confirmed and both the closed form and PEFT give the hand count."""
    cell = report.cell(scenario, R)
    assert cell.status == data.OK, (scenario, cell.status, cell.note)
    assert cell.formula_trainable == expected, (scenario, cell.formula)
    assert cell.peft_trainable == expected, scenario


def assert_refused(report: ModelReport, scenario: str) -> str:
    """The cell is not applicable because PEFT refused it: no count, a one-line note. Returns PEFT's part."""
    cell = report.cell(scenario, R)
    assert cell.status == data.NOT_APPLICABLE, (scenario, cell.status, cell.note)
    assert cell.formula_trainable is None and cell.peft_trainable is None
    return assert_refused_note(cell.note)


def assert_refused_note(note: str) -> str:
    """A one-line "PEFT refuses" note; returns PEFT's part of it."""
    assert note.startswith(PEFT_REFUSES), note
    assert "\n" not in note and note == " ".join(note.split()), note
    return note.removeprefix(PEFT_REFUSES)


@pytest.mark.parametrize("name", sorted(TINY))
def test_every_family_is_reported_without_mismatch_and_says_why_in_one_line(zoo: Zoo, name: str) -> None:
    report, _ = zoo(name)
    model_type, _ = TINY[name]
    assert report.model.model_type == model_type
    assert report.model.architecture == MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]
    assert report.mismatches == (), [(c.scenario, c.note) for c in report.mismatches]
    assert report.modules and {r.part for r in report.modules} <= PARTS
    assert any(cell.status == data.OK for cell in report.cells)
    for cell in report.cells:
        assert cell.status in (data.OK, data.NOT_APPLICABLE, data.NO_MATCH), (cell.scenario, cell.status)
        if cell.status == data.OK:
            assert cell.formula_trainable == cell.peft_trainable is not None and cell.peft_trainable > 0
        else:
            assert cell.note.strip() and "\n" not in cell.note and cell.note == " ".join(cell.note.split()), cell
            assert cell.formula_trainable is None and cell.peft_trainable is None
        if cell.status == data.NOT_APPLICABLE:
            assert cell.note.startswith("not applicable:"), cell.note


# --- BERT as a causal LM (is_decoder=True) -------------------------------------------------------------------


def test_bert_all_linear_adapts_the_head_transform_outside_the_blocks(zoo: Zoo) -> None:
    report, _ = zoo("bert")
    assert shapes(report) == {
        "attention.self.query": [(H, H)], "attention.self.key": [(H, H)], "attention.self.value": [(H, H)],
        "attention.output.dense": [(H, H)], "intermediate.dense": [(BERT_INTER, H)],
        "output.dense": [(H, BERT_INTER)], "cls.predictions.transform.dense": [(H, H)],
    }
    transform = row(report, "cls.predictions.transform.dense")
    assert transform.part == "head" and transform.layer_indices == () and transform.layers == 1
    assert row(report, "attention.self.query").part == "language model"
    per_layer = (
        lora(H, H)  # attention.self.query  8 * (32 + 32) = 512
        + lora(H, H)  # attention.self.key
        + lora(H, H)  # attention.self.value
        + lora(H, H)  # attention.output.dense
        + lora(BERT_INTER, H)  # intermediate.dense  8 * (48 + 32) = 640
        + lora(H, BERT_INTER)  # output.dense  8 * (32 + 48) = 640
    )
    head = lora(H, H)  # cls.predictions.transform.dense, once; the decoder (lm_head) is left out
    assert per_layer * BERT_LAYERS + head == 2 * 3328 + 512 == 7168
    assert_counted(report, "all_linear", 7168)
    assert_counted(report, "transform.dense", 512)
    assert_counted(report, "qv_only", BERT_LAYERS * (lora(H, H) + lora(H, H)))
    assert_counted(report, "qkvo", BERT_LAYERS * 4 * lora(H, H))


def test_bert_output_dense_reaches_attention_output_dense_too(zoo: Zoo) -> None:
    # PEFT matches "output.dense" as a name suffix: the MLP's output.dense and attention.output.dense.
    report, _ = zoo("bert")
    assert_counted(report, "output.dense", BERT_LAYERS * (lora(H, BERT_INTER) + lora(H, H)))  # 2 * (640 + 512)
    assert_counted(report, "attention.output.dense", BERT_LAYERS * lora(H, H))


# --- DeepSeek-V3: fused experts, shared experts, dense layers, multi-head latent attention ----------------------


def test_deepseek_module_rows_by_hand(zoo: Zoo) -> None:
    report, _ = zoo("deepseek_v3")
    dense, moe = (0,), tuple(range(1, DS_LAYERS))
    assert row(report, "mlp.gate_proj").layer_indices == dense
    assert row(report, "mlp.gate_proj").shape == (DS_INTER, H)
    assert row(report, "mlp.down_proj").shape == (H, DS_INTER)
    assert row(report, "mlp.shared_experts.gate_proj").shape == (DS_MOE_INTER, H)  # 1 shared expert
    assert row(report, "mlp.shared_experts.gate_proj").layer_indices == moe
    experts = row(report, "mlp.experts.gate_up_proj")
    assert (experts.kind, experts.experts, experts.shape, experts.layer_indices) == (
        "experts", DS_EXPERTS, (2 * DS_MOE_INTER, H), moe)
    down = row(report, "mlp.experts.down_proj")
    assert (down.kind, down.experts, down.shape) == ("experts", DS_EXPERTS, (H, DS_MOE_INTER))
    router = row(report, "mlp.gate.weight")
    assert (router.kind, router.shape, router.layer_indices) == ("param", (DS_EXPERTS, H), moe)
    # The config check derives the experts' and shared expert's widths from moe_intermediate_size, and
    # has no rule (rather than a wrong one) for latent attention: no row of this config differs.
    assert row(report, "mlp.shared_experts.down_proj").expected_shape == (H, DS_MOE_INTER)
    assert experts.expected_shape == (2 * DS_MOE_INTER, H)
    assert [r.path for r in report.modules if r.check_label == "DIFFERS"] == []


@pytest.mark.parametrize("scenario, peft_target, partner", [
    ("shared_experts.gate_proj", "shared_experts.gate_proj", "up_proj"),
    ("mlp.gate_proj", "mlp.gate_proj", "up_proj"),
    ("shared_experts.up_proj", "shared_experts.up_proj", "gate_proj"),
])
def test_deepseek_gate_or_up_alone_is_refused_with_peft_fused_message(
        zoo: Zoo, scenario: str, peft_target: str, partner: str) -> None:
    report, path = zoo("deepseek_v3")
    said = assert_refused(report, scenario)
    leaf = peft_target.rsplit(".", 1)[-1]
    assert said.startswith(f"Cannot convert PEFT target(s) {leaf} without also targeting {partner} "
                           "because they are fused into gate_up_proj"), said
    # Exactly PEFT's own message, whitespace folded to one line.
    assert said == " ".join(peft_refusal(path, target_modules=[peft_target]).split())


def test_deepseek_mla_qv_only_not_applicable_and_qkvo_by_hand(zoo: Zoo) -> None:
    report, _ = zoo("deepseek_v3")
    qk_head = DS_NOPE + DS_ROPE  # 12
    assert shapes(report)["self_attn.q_a_proj"] == [(DS_Q_LORA, H)]
    assert shapes(report)["self_attn.q_b_proj"] == [(DS_HEADS * qk_head, DS_Q_LORA)]
    assert shapes(report)["self_attn.kv_a_proj_with_mqa"] == [(DS_KV_LORA + DS_ROPE, H)]
    assert shapes(report)["self_attn.kv_b_proj"] == [(DS_HEADS * (DS_NOPE + DS_V), DS_KV_LORA)]
    assert shapes(report)["self_attn.o_proj"] == [(H, DS_HEADS * DS_V)]
    # k and v come from one latent: v cannot be adapted alone.
    qv_only = report.cell("qv_only", R)
    assert qv_only.status == data.NOT_APPLICABLE and qv_only.formula_trainable is None
    assert qv_only.note.startswith("not applicable:") and "\n" not in qv_only.note
    assert "kv_a_proj_with_mqa" in qv_only.note and "kv_b_proj" in qv_only.note
    per_layer = (
        lora(DS_Q_LORA, H)  # q_a_proj  8 * (24 + 32) = 448
        + lora(DS_HEADS * qk_head, DS_Q_LORA)  # q_b_proj  8 * (48 + 24) = 576
        + lora(DS_KV_LORA + DS_ROPE, H)  # kv_a_proj_with_mqa  8 * (20 + 32) = 416
        + lora(DS_HEADS * (DS_NOPE + DS_V), DS_KV_LORA)  # kv_b_proj  8 * (64 + 16) = 640
        + lora(H, DS_HEADS * DS_V)  # o_proj  8 * (32 + 32) = 512
    )
    assert per_layer * DS_LAYERS == 2592 * 3 == 7776
    assert_counted(report, "qkvo", 7776)
    assert set(report.cell("qkvo", R).targets) == {
        "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"}


def test_deepseek_mla_without_q_lora_adapts_q_proj(zoo: Zoo) -> None:
    report, _ = zoo("deepseek_v3_q_proj")  # q_lora_rank None: q through one q_proj; 2 layers
    assert "self_attn.q_a_proj" not in shapes(report)
    assert report.cell("qv_only", R).status == data.NOT_APPLICABLE
    per_layer = (
        lora(DS_HEADS * (DS_NOPE + DS_ROPE), H)  # q_proj  8 * (48 + 32) = 640
        + lora(DS_KV_LORA + DS_ROPE, H)  # kv_a_proj_with_mqa  416
        + lora(DS_HEADS * (DS_NOPE + DS_V), DS_KV_LORA)  # kv_b_proj  640
        + lora(H, DS_HEADS * DS_V)  # o_proj  512
    )
    assert_counted(report, "qkvo", 2 * per_layer)
    assert 2 * per_layer == 4416
    assert set(report.cell("qkvo", R).targets) == {"q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"}


def test_deepseek_all_linear_is_what_peft_v5_conversion_adapts(zoo: Zoo) -> None:
    # Under transformers 5, PEFT turns all-linear into leaf names and maps gate_proj/up_proj/down_proj
    # (and the router "gate") onto the fused expert parameters: the dense layer's MLP and the shared
    # expert keep no adapter; gate_up_proj fuses two v4 projections, so its rank is doubled.
    report, _ = zoo("deepseek_v3")
    attention = 7776  # as in the qkvo test: 2592 per layer, 3 layers
    router = lora(DS_EXPERTS, H) * (DS_LAYERS - 1)  # mlp.gate.weight (4, 32): 8 * 36 = 288 per MoE layer
    gate_up = 2 * R * DS_EXPERTS * (2 * DS_MOE_INTER + H) * (DS_LAYERS - 1)  # 16 * 4 * (32 + 32) = 4096
    down = lora(H, DS_MOE_INTER, DS_EXPERTS) * (DS_LAYERS - 1)  # 8 * 4 * (32 + 16) = 1536
    assert attention + router + gate_up + down == 7776 + 576 + 8192 + 3072 == 19616
    assert_counted(report, "all_linear", 19616)
    assert_counted(report, "gate_up_proj", lora(2 * DS_MOE_INTER, H, DS_EXPERTS) * (DS_LAYERS - 1))  # rank 8
    # The dense layer's mlp.down_proj, named alone, becomes target_parameters "down_proj": the experts' only.
    experts_down = lora(H, DS_MOE_INTER, DS_EXPERTS) * (DS_LAYERS - 1)  # 2 * 1536
    assert_counted(report, "mlp.down_proj", experts_down)
    assert_counted(report, "shared_experts.down_proj", experts_down)
    assert "fused experts" in report.cell("mlp.down_proj", R).note


# --- Falcon-H1: a Mamba hybrid ----------------------------------------------------------------------------------


def test_falcon_h1_out_proj_is_refused_by_peft_and_attention_counts_by_hand(zoo: Zoo) -> None:
    report, path = zoo("falcon_h1")
    said = assert_refused(report, "out_proj")
    assert "Module 'out_proj' is incompatible with Mamba-based models (model_type='falcon_h1')" in said
    # PEFT's own message, one line (it names a set, whose order may vary between processes).
    peft_said = " ".join(peft_refusal(path, target_modules=["out_proj"]).split())
    assert said.split("Incompatible modules:")[0] == peft_said.split("Incompatible modules:")[0]
    # all-linear reaches the mixer's out_proj too, so PEFT refuses it as well.
    assert "incompatible with Mamba-based models" in assert_refused(report, "all_linear")
    assert row(report, "mamba.out_proj").shape == (H, FH_D_SSM)
    in_proj = 2 * FH_D_SSM + 2 * FH_GROUPS * FH_STATE + FH_SSM_HEADS  # gate and x, B and C, dt: 52
    assert row(report, "mamba.in_proj").shape == (in_proj, H)
    assert_counted(report, "in_proj", FH_LAYERS * lora(in_proj, H))  # 2 * 8 * (52 + 32) = 1344
    kv = FH_KV_HEADS * (H // FH_HEADS)  # 16
    # q 512 + k 384 + v 384 + o 512 per layer: the mixer's out_proj is not attention's o.
    assert_counted(report, "qkvo", FH_LAYERS * (lora(H, H) + 2 * lora(kv, H) + lora(H, H)))
    assert_counted(report, "qv_only", FH_LAYERS * (lora(H, H) + lora(kv, H)))


# --- Mamba: attention-free --------------------------------------------------------------------------------------


def test_mamba_has_no_attention_widths_and_no_shape_rule(zoo: Zoo) -> None:
    report, _ = zoo("mamba")
    card = report.model.dimensions
    assert (card.num_attention_heads, card.num_key_value_heads, card.head_dim) == (0, 0, 0)
    assert card.hidden_size == H and card.num_layers == MAMBA_LAYERS
    assert shapes(report) == {
        "mixer.in_proj": [(2 * MAMBA_INNER, H)], "mixer.x_proj": [(MAMBA_DT_RANK + 2 * MAMBA_STATE, MAMBA_INNER)],
        "mixer.dt_proj": [(MAMBA_INNER, MAMBA_DT_RANK)], "mixer.out_proj": [(H, MAMBA_INNER)],
    }
    for module in report.modules:
        assert module.check_label == "no rule" and module.expected_shape is None, module
    for scenario in ("qv_only", "qkvo"):
        cell = report.cell(scenario, R)
        assert cell.status == data.NO_MATCH and "in_proj" in cell.note and "\n" not in cell.note
    assert "incompatible with Mamba-based models (model_type='mamba')" in assert_refused(report, "out_proj")
    assert_counted(report, "in_proj", MAMBA_LAYERS * lora(2 * MAMBA_INNER, H))  # 2 * 8 * (128 + 32) = 2560
    assert_counted(report, "x_proj", MAMBA_LAYERS * lora(MAMBA_DT_RANK + 2 * MAMBA_STATE, MAMBA_INNER))  # 1344
    assert_counted(report, "dt_proj", MAMBA_LAYERS * lora(MAMBA_INNER, MAMBA_DT_RANK))  # 2 * 8 * 68 = 1088


# --- Gemma-3 multimodal: text_config and vision_config ----------------------------------------------------------


def test_gemma3_widths_come_from_text_config_and_rows_carry_their_part(zoo: Zoo) -> None:
    report, _ = zoo("gemma3")
    card = report.model.dimensions
    assert (card.hidden_size, card.num_layers, card.num_attention_heads, card.num_key_value_heads,
            card.head_dim, card.intermediate_size) == (H, G3_LAYERS, G3_HEADS, G3_KV_HEADS, G3_HEAD_DIM, G3_INTER)
    q, kv = G3_HEADS * G3_HEAD_DIM, G3_KV_HEADS * G3_HEAD_DIM  # 32, 16
    assert shapes(report, "language model") == {
        "self_attn.q_proj": [(q, H)], "self_attn.k_proj": [(kv, H)], "self_attn.v_proj": [(kv, H)],
        "self_attn.o_proj": [(H, q)], "mlp.gate_proj": [(G3_INTER, H)], "mlp.up_proj": [(G3_INTER, H)],
        "mlp.down_proj": [(H, G3_INTER)],
    }
    language = [r for r in report.modules if r.part == "language model"]
    assert all(r.layer_prefix == "model.language_model.layers" and r.check_label == "agrees" for r in language)
    vision = [r for r in report.modules if "vision_tower" in r.layer_prefix or "vision_tower" in r.path]
    assert vision and all(r.part == "vision tower" for r in vision)
    assert {"self_attn.q_proj", "self_attn.v_proj", "mlp.fc1"} <= {r.path for r in vision}
    assert row(report, "self_attn.q_proj", (VIS_HIDDEN, VIS_HIDDEN)).part == "vision tower"
    assert {r.part for r in report.modules} == {"language model", "vision tower"}


def test_gemma3_qv_only_reaches_the_vision_tower_q_and_v_by_name(zoo: Zoo) -> None:
    report, _ = zoo("gemma3")
    q, kv = G3_HEADS * G3_HEAD_DIM, G3_KV_HEADS * G3_HEAD_DIM
    language = G3_LAYERS * (lora(q, H) + lora(kv, H))  # 2 * (512 + 384)
    vision = VIS_LAYERS * (lora(VIS_HIDDEN, VIS_HIDDEN) + lora(VIS_HIDDEN, VIS_HIDDEN))  # 256 + 256
    assert language + vision == 1792 + 512 == 2304
    assert_counted(report, "qv_only", 2304)
    # all-linear: every Linear of both, the SigLIP pooling head's out_proj and MLP included.
    language_all = G3_LAYERS * (lora(q, H) + 2 * lora(kv, H) + lora(H, q) + 2 * lora(G3_INTER, H)
                                + lora(H, G3_INTER))  # 2 * 3712
    vision_layer = 4 * lora(VIS_HIDDEN, VIS_HIDDEN) + lora(VIS_INTER, VIS_HIDDEN) + lora(VIS_HIDDEN, VIS_INTER)
    pooling_head = lora(VIS_HIDDEN, VIS_HIDDEN) + lora(VIS_INTER, VIS_HIDDEN) + lora(VIS_HIDDEN, VIS_INTER)
    assert language_all + VIS_LAYERS * vision_layer + pooling_head == 7424 + 1664 + 896 == 9984
    assert_counted(report, "all_linear", 9984)
    assert_counted(report, "o_proj", G3_LAYERS * lora(H, q))  # the vision tower's is out_proj: not reached


# --- Zamba2: shared transformer blocks in a Mamba-2 hybrid ------------------------------------------------------


def test_zamba2_shared_blocks_are_adapted_in_every_hybrid_layer(zoo: Zoo) -> None:
    report, _ = zoo("zamba2")
    hybrid = tuple(i for i, kind in enumerate(Z_TYPES) if kind == "hybrid")  # (1, 3)
    mamba_only = tuple(i for i, kind in enumerate(Z_TYPES) if kind != "hybrid")  # (0, 2)
    attention_width = 2 * H  # the shared block reads [hidden, embeddings]
    inner = 2 * H  # mamba_expand * hidden
    in_proj = 2 * inner + 2 * 1 * Z_STATE + Z_SSM_HEADS  # 128 + 16 + 8 = 152
    q = row(report, "shared_transformer.self_attn.q_proj")
    assert q.shape == (attention_width, attention_width) and q.layer_indices == hybrid
    assert row(report, "shared_transformer.self_attn.o_proj").shape == (H, attention_width)
    assert row(report, "mamba.in_proj").layer_indices == mamba_only
    assert row(report, "mamba_decoder.mamba.in_proj").layer_indices == hybrid
    assert row(report, "mamba.in_proj").shape == (in_proj, H)
    # One shared block (num_mem_blocks=1): its weights are one tensor in both hybrid layers, yet PEFT
    # wraps the module in each layer, so each hybrid layer gets its own adapter.
    per_hybrid = (
        3 * lora(attention_width, attention_width)  # q, k, v: 3 * 8 * 128 = 3072
        + lora(H, attention_width)  # o_proj 768
        + lora(2 * Z_INTER, H)  # gate_up_proj 1024
        + lora(H, Z_INTER)  # down_proj 640
        # gate_up_proj's adapter list: one (down 4, up 96) pair per hybrid layer of the model: 2 * (288 + 800)
        + len(hybrid) * (lora(Z_ADAPTER, H) + lora(2 * Z_INTER, Z_ADAPTER))
        + lora(H, H)  # the hybrid layer's linear 512
        + lora(in_proj, H) + lora(H, inner)  # its Mamba-2 mixer: 1472 + 768
    )
    per_mamba = lora(in_proj, H) + lora(H, inner)  # 2240
    assert per_hybrid * len(hybrid) + per_mamba * len(mamba_only) == 2 * 10432 + 2 * 2240 == 25344
    assert_counted(report, "all_linear", 25344)
    attention = 3 * lora(attention_width, attention_width) + lora(H, attention_width)  # q, k, v, o: 3840
    assert_counted(report, "qkvo", len(hybrid) * attention)
    # "mamba.out_proj" is a name suffix of mamba_decoder.mamba.out_proj too: all four layers.
    assert_counted(report, "mamba.out_proj", len(Z_TYPES) * lora(H, inner))


# --- CTRL: PEFT's multi-line refusal in one line ----------------------------------------------------------------


def test_ctrl_tags_never_name_a_whole_block_and_q_k_v_are_wq_wk_wv(zoo: Zoo) -> None:
    report, _ = zoo("ctrl")
    # ffn is a Sequential: its Linears are ffn.0 and ffn.2; a bare "0" or "2" would also name the
    # blocks transformer.h.0 and transformer.h.2 (3 layers here), as PEFT matches names.
    assert {r.tag for r in report.modules} >= {"ffn.0", "ffn.2"}
    assert not any(r.tag[0].isdigit() for r in report.modules)
    assert_counted(report, "ffn.0", CTRL_LAYERS * lora(CTRL_DFF, H))  # 3 * 8 * (48 + 32) = 1920
    assert_counted(report, "ffn.2", CTRL_LAYERS * lora(H, CTRL_DFF))
    assert_counted(report, "qv_only", CTRL_LAYERS * 2 * lora(H, H))  # Wq and Wv: 3 * 2 * 512
    assert_counted(report, "qkvo", CTRL_LAYERS * 4 * lora(H, H))  # Wq, Wk, Wv and dense
    per_layer = 4 * lora(H, H) + lora(CTRL_DFF, H) + lora(H, CTRL_DFF)  # 2048 + 640 + 640
    assert_counted(report, "all_linear", CTRL_LAYERS * per_layer)
    assert CTRL_LAYERS * per_layer == 9984


def test_ctrl_peft_refusal_of_a_whole_encoder_layer_becomes_a_one_line_cell(zoo: Zoo) -> None:
    from reportgen.methods import Plan
    from reportgen.variants import BUILTIN_VARIANTS
    from reportgen.peft_count import count_cell

    report, path = zoo("ctrl")
    # PEFT's own message for the name "0" (transformer.h.0 is an EncoderLayer) prints the layer's repr.
    raw = peft_refusal(path, target_modules=["0"])
    assert "\n" in raw and "EncoderLayer(" in raw and "(multi_head_attention)" in raw
    # The pipeline's PEFT step, given that name: the cell it returns is not applicable, in one line.
    model = meta_model(path)
    # The formula's cell for ffn.0, before PEFT counts it, handed to PEFT with the name "0".
    formula_only = dataclasses.replace(report.cell("ffn.0", R), peft_trainable=None)
    cell = count_cell(model, formula_only, Plan((), False, modules=("0",)), BUILTIN_VARIANTS["lora"])
    assert cell.status == data.NOT_APPLICABLE and cell.formula_trainable is None and cell.peft_trainable is None
    said = assert_refused_note(cell.note)
    assert "(multi_head_attention)" not in said
    # PEFT's words with the layer's printout folded to its class name, whitespace collapsed (cut with "...").
    head, tail = raw[: raw.index("EncoderLayer(") + len("EncoderLayer")], raw[raw.index("\n) ") + 2:]
    expected = " ".join((head + tail).split())
    assert expected.startswith("Target module EncoderLayer is not supported. Currently, only the following")
    assert said == expected or (said.endswith("...") and expected.startswith(said[:-3].rstrip())), said


# --- Gemma-3n: a module type whose shape differs between layers -------------------------------------------------


def test_gemma3n_rows_are_grouped_by_name_and_shape(zoo: Zoo) -> None:
    report, _ = zoo("gemma3n_text")
    first, second = G3N_INTERS
    assert sorted(shapes(report)["mlp.gate_proj"]) == [(first, H), (second, H)]
    assert row(report, "mlp.gate_proj", (first, H)).layer_indices == (0,)
    assert row(report, "mlp.gate_proj", (second, H)).layer_indices == (1,)
    assert sorted(shapes(report)["mlp.down_proj"]) == [(H, first), (H, second)]
    # The config's intermediate size is per layer: no single width, so no shape rule.
    assert report.model.dimensions.intermediate_size == 0
    assert row(report, "mlp.up_proj", (first, H)).check_label == "no rule"
    assert_counted(report, "down_proj", lora(H, first) + lora(H, second))  # 640 + 768
    assert_counted(report, "gate_proj", lora(first, H) + lora(second, H))
