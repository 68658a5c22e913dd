"""Every method and option, on shrunken configs of every bundled family: closed form == PEFT, and by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from reportgen import data
from reportgen.errors import UsageError
from reportgen.methods import factorization, plan_cell
from reportgen.variants import BUILTIN_VARIANTS, make_variant, parse_methods
from reportgen.peft_count import peft_config
from tests.families import FAMILIES, study_report, tiny_config

OPTION_VARIANTS = (
    make_variant("lora_all", "lora", {"bias": "all", "modules_to_save": ["lm_head"]}),
    make_variant("lora_only", "lora", {"bias": "lora_only", "lora_bias": True, "layers_to_transform": [1]}),
    make_variant("patterns", "lora", {"rank_pattern": {"q_proj": 5, "layers.1.self_attn.v_proj": 2, "c_attn": 4,
                                                       "gate_up_proj": 3, "down_proj": 7},
                                      "alpha_pattern": {"q_proj": 3}}),
    make_variant("loha_layer0", "loha", {"rank_pattern": {"q_proj": 5}, "layers_to_transform": [0]}),
)
ALL_VARIANTS = tuple(BUILTIN_VARIANTS.values()) + OPTION_VARIANTS


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_formula_equals_peft_for_every_method_and_option(write_config: Callable[..., Path], family: str) -> None:
    report = study_report(write_config(family=family), ALL_VARIANTS, ranks=(3, 12))
    assert report.mismatches == (), [(c.scenario, c.method, c.rank, c.note) for c in report.mismatches]
    for variant in ALL_VARIANTS:
        counted = [c for c in report.cells if c.method == variant.name and c.status == data.OK]
        if family == "gpt2" and variant.method in ("loha", "lokr"):
            # PEFT's LoHa/LoKr refuse GPT-2's Conv1D: every one of its cells must say so, none may be missing.
            cells = [c for c in report.cells if c.method == variant.name]
            assert cells and not counted
            assert all(c.status == data.NOT_APPLICABLE and c.note for c in cells), cells
            # Each says why (fused q/v, an option PEFT refuses, or the Conv1D itself); the Conv1D reason is among them.
            assert any("not GPT-2's Conv1D" in c.note for c in cells), cells
            continue
        assert counted, f"{family}: no {variant.name} cell was counted"
        for cell in counted:
            assert cell.formula_trainable == cell.peft_trainable
    for cell in report.cells:
        if cell.status == data.NOT_APPLICABLE:
            assert cell.note.startswith("not applicable:") and cell.formula_trainable is None


def test_hand_counts_on_tiny_llama(write_config: Callable[..., Path]) -> None:
    # llama: hidden 64, 4 heads of 16, 2 kv heads -> k/v out 32; intermediate 96; 2 layers.
    variants = parse_methods("lora,dora,rslora,loha,lokr,vera,ia3")
    report = study_report(write_config(), variants, ranks=(8,))
    assert report.cell("qkvo", 8, "lora").peft_trainable == 2 * (8 * (64 + 64) * 2 + 8 * (32 + 64) * 2)
    # DoRA adds one magnitude per output feature of each adapted layer.
    assert report.cell("qkvo", 8, "dora").peft_trainable == 2 * (8 * 128 * 2 + 8 * 96 * 2 + 64 + 32 + 32 + 64)
    assert report.cell("qkvo", 8, "rslora").peft_trainable == report.cell("qkvo", 8, "lora").peft_trainable
    assert report.cell("qkvo", 8, "lora").scaling == 16 / 8  # alpha/r with alpha = 2r
    assert report.cell("qkvo", 8, "rslora").scaling == pytest.approx(16 / 8 ** 0.5)  # alpha/sqrt(r)
    assert report.cell("down_proj", 8, "loha").peft_trainable == 2 * 2 * 8 * (64 + 96)
    # LoKr: 64 = 8*8, 96 = 8*12; w1 8x8; r=8 >= max(8, 12)/2 so w2 is a full 8x12.
    assert report.cell("down_proj", 8, "lokr").peft_trainable == 2 * (8 * 8 + 8 * 12)
    assert report.cell("down_proj", 8, "vera").peft_trainable == 2 * (8 + 64)  # lambda_d (r) + lambda_b (out)
    assert report.cell("down_proj", 8, "ia3").peft_trainable == 2 * 96  # feed-forward: scales the input
    assert report.cell("q_proj", 8, "ia3").peft_trainable == 2 * 64


def test_options_by_hand_on_tiny_gpt2(write_config: Callable[..., Path]) -> None:
    report = study_report(write_config(family="gpt2"), OPTION_VARIANTS[:2], ranks=(8,))
    lora = 8 * (64 + 192) * 2  # c_attn (Conv1D, 64 -> 192) in both layers
    # bias="all": every bias of the model (ln_1 64, c_attn 192, attn.c_proj 64, ln_2 64, c_fc 256,
    # mlp.c_proj 64 per layer, ln_f 64); modules_to_save copies lm_head (128 x 64, tied to wte).
    assert report.cell("c_attn", 8, "lora_all").peft_trainable == lora + 2 * 704 + 64 + 128 * 64
    # lora_only on layer 1 alone: B's bias (192) + c_attn's own bias (192).
    assert report.cell("c_attn", 8, "lora_only").peft_trainable == 8 * (64 + 192) + 192 + 192


def test_mixtral_all_linear_adapts_experts_and_router(write_config: Callable[..., Path]) -> None:
    # mixtral: 4 experts, hidden 64, intermediate 96, 2 layers; attention as in llama.
    report = study_report(write_config(family="mixtral"), (BUILTIN_VARIANTS["lora"],), ranks=(8,))
    attention = 8 * (64 + 64) * 2 + 8 * (32 + 64) * 2
    router = 8 * (4 + 64)  # mlp.gate.weight (4, 64) through target_parameters
    gate_up = (2 * 8) * 4 * (2 * 96 + 64)  # w1 and w3 fused: PEFT doubles the rank, A (2r*E, in)
    down = 8 * 4 * (96 + 64)
    assert report.cell("all_linear", 8).peft_trainable == 2 * (attention + router + gate_up + down)


def test_reused_model_counts_like_a_fresh_model(write_config: Callable[..., Path]) -> None:
    for family in ("mixtral", "gpt2"):
        report = study_report(write_config(family=family), ALL_VARIANTS, ranks=(3,))
        config = AutoConfig.for_model(**tiny_config(family))

        for cell in report.cells:
            if cell.status != data.OK:
                continue
            with torch.device("meta"):
                fresh = AutoModelForCausalLM.from_config(config)
            variant = next(v for v in ALL_VARIANTS if v.name == cell.method)
            scenario = next(s for s in report.scenarios if s.name == cell.scenario)
            plan = plan_cell(scenario, cell.rank, variant, report.modules, family)
            peft_model = get_peft_model(fresh, peft_config(variant, plan, cell.rank), low_cpu_mem_usage=True)
            assert peft_model.get_nb_trainable_parameters()[0] == cell.peft_trainable, (family, cell.scenario)


def test_mixtral_all_linear_equals_plain_peft_without_task_type(write_config: Callable[..., Path]) -> None:
    from peft import LoraConfig

    report = study_report(write_config(family="mixtral"), (BUILTIN_VARIANTS["lora"],), ranks=(12,))
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(AutoConfig.for_model(**tiny_config("mixtral")))
    peft_model = get_peft_model(fresh, LoraConfig(r=12, target_modules="all-linear"), low_cpu_mem_usage=True)
    assert report.cell("all_linear", 12).formula_trainable == peft_model.get_nb_trainable_parameters()[0]


def test_lokr_factorization_equals_peft_for_every_width() -> None:
    from peft.tuners.lokr.layer import factorization as peft_factorization

    assert all(factorization(n) == peft_factorization(n) for n in range(1, 5000))


def test_lokr_factorization_matches_peft_examples() -> None:
    # PEFT's docstring: factorization(256) == (16, 16), (128) == (8, 16), (127) == (1, 127), (128, 4) == (4, 32).
    assert factorization(256) == (16, 16)
    assert factorization(128) == (8, 16)
    assert factorization(127) == (1, 127)
    assert factorization(128, 4) == (4, 32)


def test_unknown_methods_and_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown method 'lorra'"):
        parse_methods("lora,lorra")
    with pytest.raises(UsageError, match="ia3 has no option use_dora"):
        make_variant("x", "ia3", {"use_dora": True})
    with pytest.raises(UsageError, match="bias must be one of"):
        make_variant("x", "lora", {"bias": "some"})


def test_counting_leaves_the_meta_model_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import LoraConfig

    from reportgen import peft_count

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**tiny_config("gpt2")))
    printout, parameters = repr(model), dict(model.named_parameters())
    # modules_to_save on GPT-2's lm_head, which is tied to the token embeddings: PEFT trains a copy of it.
    config = LoraConfig(r=3, target_modules=["c_attn"], modules_to_save=["lm_head"], bias="all")
    with peft_count.adapted(model, config) as peft_model:
        assert type(model.lm_head).__name__ == "ModulesToSaveWrapper"
        trainable, _ = peft_model.get_nb_trainable_parameters()
    # GPT-2 (shrunken): c_attn A and B, every bias, and the lm_head copy (vocab x hidden).
    gpt2 = tiny_config("gpt2")
    hidden, layers, vocab = gpt2["n_embd"], gpt2["n_layer"], gpt2["vocab_size"]
    # bias="all": per block ln_1 (h), c_attn (3h), attn.c_proj (h), ln_2 (h), c_fc (4h), mlp.c_proj (h); then ln_f.
    biases = layers * 11 * hidden + hidden
    assert trainable == layers * 3 * (hidden + 3 * hidden) + biases + vocab * hidden
    assert repr(model) == printout
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    after = dict(model.named_parameters())
    assert after.keys() == parameters.keys() and all(after[name] is p for name, p in parameters.items())
    assert all(p.requires_grad for p in after.values())
    assert not hasattr(model, "peft_config")

    # A restore that leaves PEFT's layers in place is caught, never counted on.
    monkeypatch.setattr(peft_count, "_unwrap", lambda parent: None)
    with pytest.raises(AssertionError, match="not restored"):
        with peft_count.adapted(model, LoraConfig(r=3, target_modules=["c_attn"])):
            pass
