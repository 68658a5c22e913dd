"""Roles and scenarios on the real bundled configs (meta device), and the issue's published figures."""

from __future__ import annotations

import pytest

from reportgen import data
from reportgen.data import Scenario
from reportgen.variants import BUILTIN_VARIANTS, parse_methods
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec, catalog_ids

SEVEN = Scenario("seven", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))


def inspect(model_id: str, ranks: tuple[int, ...] = (8,), methods: str = "lora",
            scenarios: tuple[Scenario, ...] = ()) -> data.ModelReport:
    study = Study(ranks=ranks, variants=parse_methods(methods), scenarios=scenarios, merge_check=False)
    return analyse_spec(ModelSpec(text=model_id, origin="test"), "test", study)


def test_gpt2_c_attn_at_rank_8_trains_294912() -> None:
    # Issue 5: 8 * (768 + 2304) * 12 layers = 294,912.
    report = inspect("openai-community/gpt2")
    assert report.cell("c_attn", 8).peft_trainable == report.cell("c_attn", 8).formula_trainable == 294_912
    roles = {row.tag: row.role for row in report.modules}
    assert roles == {"c_attn": "qkv", "attn.c_proj": "o", "c_fc": "up", "mlp.c_proj": "down"}
    assert report.cell("qv_only", 8).status == data.NOT_APPLICABLE
    assert "fused" in report.cell("qv_only", 8).note


def test_llama_8b_seven_projections_lora_and_dora() -> None:
    # Issue 5: all seven projections at r=16: 41,943,040 with LoRA and 43,319,296 with DoRA.
    report = inspect("meta-llama/Llama-3.1-8B-Instruct", ranks=(16,), methods="lora,dora", scenarios=(SEVEN,))
    assert report.cell("seven", 16, "lora").peft_trainable == 41_943_040
    assert report.cell("seven", 16, "dora").peft_trainable == 43_319_296
    assert report.cell("seven", 16, "dora").formula_trainable == 43_319_296


@pytest.mark.parametrize(
    ("model_id", "roles"),
    [
        ("microsoft/Phi-3-mini-4k-instruct", {"qkv_proj": "qkv", "o_proj": "o", "gate_up_proj": "gate_up",
                                              "down_proj": "down"}),
        ("tiiuae/falcon-7b", {"query_key_value": "qkv", "dense": "o", "dense_h_to_4h": "up",
                              "dense_4h_to_h": "down"}),
        ("mistralai/Mixtral-8x7B-v0.1", {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o",
                                         "gate": "router", "gate_up_proj": "gate_up", "down_proj": "down"}),
    ],
)
def test_roles_of_fused_and_odd_families(model_id: str, roles: dict[str, str]) -> None:
    report = inspect(model_id)
    assert {row.tag: row.role for row in report.modules} == roles
    assert all(row.agrees for row in report.modules), [row.tag for row in report.modules if not row.agrees]


def test_qv_only_is_not_applicable_on_fused_qkv_and_unknown_targets_match_nothing() -> None:
    report = inspect("microsoft/Phi-3-mini-4k-instruct", scenarios=(Scenario("nope", ("wq_proj",)),))
    assert report.cell("qv_only", 8).status == data.NOT_APPLICABLE
    assert report.cell("qv_only", 8).note.startswith("not applicable: fused (qkv_proj")
    assert report.cell("qkvo", 8).targets == ("qkv_proj", "o_proj")
    assert report.cell("nope", 8).status == data.NO_MATCH
    assert report.cell("nope", 8).note == "targets wq_proj match no module of this model"


def test_mixtral_all_linear_includes_experts_like_peft() -> None:
    # PEFT 0.21.2 with target_modules="all-linear" on a fresh Mixtral-8x7B meta model trains
    # 179,832,832 at r=8: attention 6,815,744 + router 32*8*(8+4096) + gate_up 32*16*8*(28672+4096)
    # + down 32*8*8*(4096+14336).
    attention = 32 * (8 * (4096 + 4096) * 2 + 8 * (1024 + 4096) * 2)
    router = 32 * 8 * (8 + 4096)
    gate_up = 32 * 16 * 8 * (28672 + 4096)
    down = 32 * 8 * 8 * (4096 + 14336)
    assert attention + router + gate_up + down == 179_832_832
    report = inspect("mistralai/Mixtral-8x7B-v0.1")
    cell = report.cell("all_linear", 8)
    assert cell.formula_trainable == cell.peft_trainable == 179_832_832


@pytest.mark.slow
@pytest.mark.parametrize("model_id", catalog_ids())
def test_every_bundled_config_every_method(model_id: str) -> None:
    # The seed scenarios under every built-in method at odd and even ranks, on one meta model per config.
    from reportgen.analyse import analyse
    from reportgen.build import build
    from reportgen.data import SEED_SCENARIOS
    from reportgen.methods import formula_cell
    from reportgen.peft_count import count_cell
    from reportgen.resolve import resolve

    variants = tuple(BUILTIN_VARIANTS.values())
    built = build(resolve(ModelSpec(text=model_id, origin="test")))
    analysis = analyse(built, variants=variants)
    model, rows, facts = built.model, analysis.reachable, analysis.facts
    counted = 0
    for variant in variants:
        for scenario in SEED_SCENARIOS:
            for rank in (3, 12):
                cell, plan = formula_cell(scenario, rank, variant, rows, facts)
                cell = count_cell(model, cell, plan, variant)
                assert cell.status != data.MISMATCH, (variant.name, scenario.name, rank, cell.note)
                # Every cell is either counted by both, or says why it cannot be built.
                assert cell.status == data.OK or (cell.status == data.NOT_APPLICABLE and cell.note), cell
                counted += cell.status == data.OK
    assert counted >= 2 * len(SEED_SCENARIOS)  # at least LoRA and rsLoRA everywhere something is targeted


def test_scenario_names_match_as_peft_matches_them() -> None:
    # GPT-2 (bundled): "c_proj" names attn.c_proj (768 x 768) and mlp.c_proj (768 out, 3072 in) alike, as PEFT's
    # suffix matching does: 8 * (768 + 768) + 8 * (768 + 3072) = 12,288 + 30,720 = 43,008 per layer, 12 layers. A dotted name with a
    # layer index reaches that one layer: h.1.attn.c_attn is (2304, 768): 8 * 3,072 = 24,576.
    from reportgen.data import Scenario
    from reportgen.pipeline import Study, analyse_spec
    from reportgen.resolve import ModelSpec

    study = Study(ranks=(8,), merge_check=False,
                  scenarios=(Scenario("proj", ("c_proj",)), Scenario("one", ("h.1.attn.c_attn",))))
    report = analyse_spec(ModelSpec("openai-community/gpt2", "test"), "t", study)
    assert report.cell("proj", 8).peft_trainable == report.cell("proj", 8).formula_trainable == 12 * 43_008
    assert report.cell("one", 8).peft_trainable == report.cell("one", 8).formula_trainable == 24_576
    assert report.cell("one", 8).targets == ("h.1.attn.c_attn",)
