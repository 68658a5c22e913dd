"""Every bundled config, built on the meta device, gives the model's published parameter total."""

from __future__ import annotations

import pytest
import torch

from reportgen.analyse import module_rows
from reportgen.build import build_meta_model, load_config
from reportgen.resolve import ModelSpec, catalog_ids, resolve
from reportgen.roles import dimensions

# ../shared/model-configs/PUBLISHED_TOTALS.md (the Hugging Face safetensors totals; GPT-2 and
# Falcon as module parameters with tied weights counted once, as that file explains).
PUBLISHED_TOTALS = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": 134_515_008,
    "Qwen/Qwen2.5-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen3-8B": 8_190_735_360,
    "google/gemma-2-2b-it": 2_614_341_888,
    "meta-llama/Llama-3.1-405B": 405_853_388_800,
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824,
    "microsoft/Phi-3-mini-4k-instruct": 3_821_079_552,
    "mistralai/Mistral-7B-Instruct-v0.3": 7_248_023_552,
    "mistralai/Mixtral-8x7B-v0.1": 46_702_792_704,
    "openai-community/gpt2": 124_439_808,
    "tiiuae/falcon-7b": 6_921_720_704,
}


def test_the_catalog_is_exactly_the_published_list() -> None:
    assert catalog_ids() == sorted(PUBLISHED_TOTALS)


@pytest.mark.parametrize("model_id", sorted(PUBLISHED_TOTALS))
def test_meta_build_gives_the_published_total(model_id: str) -> None:
    resolved = resolve(ModelSpec(text=model_id, origin="test"))
    config = load_config(resolved)
    model = build_meta_model(config)
    assert all(p.device == torch.device("meta") for p in model.parameters()), "no weight may be materialised"
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_TOTALS[model_id]
    rows = module_rows(model, dimensions(config))
    disagreeing = [row.tag for row in rows if row.agrees is False]
    assert disagreeing == [], f"config-derived shapes disagree for {disagreeing}"
