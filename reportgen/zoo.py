"""The zoo: every causal-LM model type of the installed transformers, from transformers' own default config.

``make zoo`` and the zoo sweep test run reportgen over it. A model type's
default config (``AutoConfig.for_model(model_type)``) is mostly its flagship
(DeepSeek-V3, Qwen3-Next, Llama-4, ...); it is written to ``<type>/config.json``
with ``architectures`` set from transformers' causal-LM mapping, exactly as a
user would bring it.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import one_line


@dataclass(frozen=True)
class ZooEntry:
    """One model type of the causal-LM mapping: its config.json, or why transformers has no default config."""

    model_type: str
    architecture: str
    path: Path | None
    error: str = ""  # transformers' own message when it cannot create the default config


def causal_lm_types() -> dict[str, str]:
    """model_type -> causal-LM class name, as the installed transformers maps them."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return dict(sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()))


def write_zoo(folder: Path, model_types: list[str] | None = None) -> list[ZooEntry]:
    """Write each model type's default config to folder/<type>/config.json (all of the mapping's by default)."""
    from transformers import AutoConfig

    mapping = causal_lm_types()
    entries: list[ZooEntry] = []
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # default configs warn about their own special tokens
    try:
        for model_type in model_types if model_types is not None else list(mapping):
            architecture = mapping[model_type]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    config = AutoConfig.for_model(model_type).to_dict()
            except Exception as exc:  # transformers raises what it likes for a config it cannot default
                entries.append(ZooEntry(model_type, architecture, None, one_line(f"{type(exc).__name__}: {exc}")))
                continue
            config["architectures"] = [architecture]
            path = folder / model_type / "config.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config, indent=1, sort_keys=True, default=str), encoding="utf-8")
            entries.append(ZooEntry(model_type, architecture, path))
    finally:
        quiet.setLevel(level)
    return entries
