"""The one tiny config of each bundled family: the real model classes, tiny widths, built in milliseconds.

Tests take these configs from ``tiny_config``: the conftest fixture ``write_config`` writes one to a
config.json, ``AutoConfig.for_model(**tiny_config(family))`` builds one in memory. Their widths are the
inputs of the tests' hand calculations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reportgen.render.charts import ChartData
from reportgen.data import ModelReport
from reportgen.variants import Variant
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec

COMMON = {"vocab_size": 128, "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 96,
          "num_attention_heads": 4, "num_key_value_heads": 2}

# model_type -> config keys (family: the bundled models of that family)
FAMILIES: dict[str, dict[str, Any]] = {
    "llama": COMMON | {"tie_word_embeddings": True},  # Llama 3.x and SmolLM2 (LlamaForCausalLM)
    "mistral": COMMON,
    "mixtral": COMMON | {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2": COMMON | {"tie_word_embeddings": True},  # q, k, v carry biases
    "qwen3": COMMON | {"head_dim": 16},
    "gemma2": COMMON | {"head_dim": 16, "tie_word_embeddings": True},
    "phi3": COMMON | {"pad_token_id": 0},  # fused qkv_proj and gate_up_proj
    "gpt2": {"vocab_size": 128, "n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 32,
             "bos_token_id": 0, "eos_token_id": 0},  # Conv1D, c_proj twice
    "falcon": {"vocab_size": 128, "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
               "multi_query": True, "new_decoder_architecture": False, "parallel_attn": True, "bias": False,
               "bos_token_id": 0, "eos_token_id": 0},
}

# The tiny Llama (tiny_config()), counted by hand: embeddings 128*64 = 8,192, which the LM head shares;
# per layer q and o 64*64 = 4,096 each, k and v 32*64 = 2,048 each (2 kv heads of 16),
# gate/up/down 3 * 96*64 = 18,432, two norms 2*64 = 128 -> 30,848; two layers 61,696; the final norm 64.
TINY_LLAMA_PARAMS = 8_192 + 2 * 30_848 + 64  # 69,952


def tiny_config(family: str = "llama", **overrides: Any) -> dict[str, Any]:
    """The tiny config of a bundled family (model_type family), with overrides: what config.json holds."""
    return {"model_type": family} | FAMILIES[family] | overrides


def study_report(path: Path, variants: tuple[Variant, ...] | None = None, ranks: tuple[int, ...] = (3, 12),
                 **study: Any) -> ModelReport:
    """The report of one config (file or folder) under a study of these variants (default: the study's) and ranks."""
    if variants is not None:
        study["variants"] = variants
    return analyse_spec(ModelSpec(text=str(path), origin="test"), "test",
                        Study(ranks=ranks, merge_check=False, **study))


def points(chart: ChartData) -> dict[str, dict[str, float]]:
    """What a chart plots, as {series: {category: value}}: the data a test checks instead of image bytes."""
    return {series.name: dict(zip(chart.categories, series.values)) for series in chart.series}
