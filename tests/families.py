"""Shrunken configs of every bundled family: the real model classes, tiny widths, built in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def write_config(folder: Path, model_type: str, **overrides: Any) -> Path:
    """A shrunken config.json of this family in folder."""
    path = folder / f"{model_type}.json"
    path.write_text(json.dumps({"model_type": model_type} | FAMILIES[model_type] | overrides))
    return path


def study_report(path: Path, variants: tuple[Variant, ...], ranks: tuple[int, ...] = (3, 12),
                 **study: Any) -> ModelReport:
    """The report of one config file under a study of these variants and ranks."""
    return analyse_spec(ModelSpec(text=str(path), origin="test"), "test",
                        Study(ranks=ranks, variants=variants, merge_check=False, **study))
