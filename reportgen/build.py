"""Build: a config dict -> a causal LM on the meta device (no weights, any size)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .errors import BuildError
from .resolve import ResolvedConfig


def load_config(resolved: ResolvedConfig, trust_remote_code: bool = False) -> PretrainedConfig:
    """The transformers config object for a resolved config.json, never running remote code unasked."""
    data: dict[str, Any] = dict(resolved.config)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise BuildError(f"{resolved.id}: config.json has no model_type")
    if model_type in CONFIG_MAPPING:
        data.pop("model_type")
        try:
            return AutoConfig.for_model(model_type, **data)
        except (TypeError, ValueError) as exc:
            raise BuildError(f"{resolved.id}: transformers rejects this {model_type} config: {exc}") from None
    if "auto_map" in data:
        if not trust_remote_code:
            raise BuildError(
                f"{resolved.id}: model_type '{model_type}' needs the model's own Python code (auto_map); "
                "reportgen does not run remote code unless you pass --trust-remote-code"
            )
        if resolved.folder is None:
            raise BuildError(f"{resolved.id}: remote code needs the model folder, which is not at hand")
        return _load_remote_config(resolved.folder)
    raise BuildError(
        f"{resolved.id}: transformers does not know model_type '{model_type}' "
        "(a newer transformers may; or the config needs --trust-remote-code and an auto_map)"
    )


def _load_remote_config(folder: Path) -> PretrainedConfig:
    return AutoConfig.from_pretrained(str(folder), trust_remote_code=True)


def build_meta_model(config: PretrainedConfig, trust_remote_code: bool = False) -> PreTrainedModel:
    """The causal LM of this config with every tensor on the meta device."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError as exc:
            if "Unrecognized configuration class" in str(exc):
                raise BuildError(
                    f"model_type '{config.model_type}' has no causal-LM class in transformers "
                    "(reportgen analyses causal language models)"
                ) from None
            raise BuildError(f"transformers cannot build this {config.model_type} model: {exc}") from None
    model.eval()
    return model
