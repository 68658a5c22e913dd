"""Build: a config dict -> a causal LM on the meta device (no weights, any size).

Remote code (a config's ``auto_map``) runs only with ``--trust-remote-code``
and a model folder to run it from. A config transformers knows, but which
also carries an ``auto_map``, is built with transformers' own class instead,
and the report says so. A config with no causal-LM class falls back to the
base model class (``AutoModel``) when it is one stack of repeated blocks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING

from .data import Dimensions
from .errors import BuildError
from .resolve import ResolvedConfig
from .roles import dimensions

REMOTE_CODE_PREFIX = "transformers_modules"  # where transformers imports a model's own code


@dataclass(frozen=True)
class Built:
    """The build stage's hand-off: the config, the model on the meta device, and the language model's widths."""

    resolved: ResolvedConfig
    config: PretrainedConfig
    model: PreTrainedModel
    dims: Dimensions  # the one record of the widths: the model card and the memory estimate read it
    note: str  # what was built when it is not simply transformers' causal LM of the config


def build(resolved: ResolvedConfig, trust_remote_code: bool = False) -> Built:
    """A resolved config.json -> its causal LM on the meta device, with its widths."""
    config = load_config(resolved, trust_remote_code)
    model = build_meta_model(config, trust_remote_code)
    return Built(resolved, config, model, dimensions(config), describe_build(resolved, model, trust_remote_code))


def load_config(resolved: ResolvedConfig, trust_remote_code: bool = False) -> PretrainedConfig:
    """The transformers config object for a resolved config.json, never running remote code unasked."""
    data: dict[str, Any] = dict(resolved.config)
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise BuildError(f"{resolved.id}: config.json has no model_type")
    if _runs_remote_code(resolved, trust_remote_code):
        return _load_remote_config(resolved)
    if model_type in CONFIG_MAPPING:
        data.pop("model_type")
        data.pop("auto_map", None)  # transformers' own class is built: the model's code never runs
        try:
            return AutoConfig.for_model(model_type, **data)
        except Exception as exc:  # transformers validates configs with many exception types
            raise BuildError(f"{resolved.id}: transformers rejects this {model_type} config: {exc}") from None
    if "auto_map" in data:
        if not trust_remote_code:
            raise BuildError(
                f"{resolved.id}: model_type '{model_type}' needs the model's own Python code (auto_map); "
                "reportgen does not run remote code unless you pass --trust-remote-code"
            )
        raise BuildError(f"{resolved.id}: remote code needs the model folder, which is not at hand")
    raise BuildError(
        f"{resolved.id}: transformers does not know model_type '{model_type}' "
        "(a newer transformers may; or the config needs --trust-remote-code and an auto_map)"
    )


def _runs_remote_code(resolved: ResolvedConfig, trust_remote_code: bool) -> bool:
    """Whether the model's own code is both allowed and at hand (a folder beside config.json)."""
    return trust_remote_code and "auto_map" in resolved.config and resolved.folder is not None


def _load_remote_config(resolved: ResolvedConfig) -> PretrainedConfig:
    assert resolved.folder is not None
    try:
        return cast(PretrainedConfig, AutoConfig.from_pretrained(str(resolved.folder), trust_remote_code=True))
    except Exception as exc:  # the model's own code can fail in any way
        raise BuildError(f"{resolved.id}: the model's own config code (auto_map) failed: {exc}") from None


def _auto_class(config: PretrainedConfig) -> type[AutoModelForCausalLM] | type[AutoModel]:
    """AutoModelForCausalLM, or AutoModel where a base model is a meaningful fallback."""
    remote = getattr(config, "auto_map", None) or {}
    if "AutoModelForCausalLM" in remote or type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
        return AutoModelForCausalLM
    model_type = config.model_type
    if getattr(config, "is_encoder_decoder", False):
        raise BuildError(
            f"model_type '{model_type}' is an encoder-decoder with no causal-LM class in transformers; "
            "reportgen analyses one stack of repeated blocks and would mix encoder and decoder layers"
        )
    if type(config) in MODEL_MAPPING or "AutoModel" in remote:
        return AutoModel
    raise BuildError(
        f"model_type '{model_type}' has neither a causal-LM class nor a base model class in transformers "
        "(reportgen analyses causal language models)"
    )


def build_meta_model(config: PretrainedConfig, trust_remote_code: bool = False) -> PreTrainedModel:
    """The causal LM of this config (else its base model) with every tensor on the meta device."""
    auto = _auto_class(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.device("meta"):
                built = auto.from_config(config, trust_remote_code=trust_remote_code)  # type: ignore[no-untyped-call]
        except Exception as exc:  # a malformed config fails deep inside the model's __init__
            raise BuildError(
                f"transformers cannot build this {config.model_type} model: {type(exc).__name__}: {exc}"
            ) from None
    model = cast(PreTrainedModel, built)
    model.eval()  # type: ignore[no-untyped-call]
    return model


def describe_build(resolved: ResolvedConfig, model: PreTrainedModel, trust_remote_code: bool = False) -> str:
    """What was built, when it is not simply transformers' causal LM of the config ("" when it is)."""
    name = type(model).__name__
    if type(model).__module__.startswith(REMOTE_CODE_PREFIX):
        return f"built {name} from the model's own code (auto_map), allowed by --trust-remote-code"
    notes: list[str] = []
    if "auto_map" in resolved.config:
        why = "its folder is not at hand" if trust_remote_code else "--trust-remote-code was not given"
        notes.append(f"the config names its own code (auto_map), which did not run ({why}); "
                     f"built transformers' own {name} instead")
    if type(model.config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        notes.append(f"transformers has no causal-LM class for model_type '{model.config.model_type}': "
                     f"built the base model {name} (AutoModel), which has no LM head")
    return "; ".join(notes)


def parameter_count(model: nn.Module) -> int:
    """Unique parameters, a tied tensor once (parameters() yields a shared tensor once).

    The one count reportgen makes itself; the explanation table sets transformers'
    own num_parameters() beside it, so this stays a walk of its own.
    """
    return sum(param.numel() for param in model.parameters())


def embeddings_tied(model: nn.Module) -> bool:
    """Whether the output head shares the input embedding's weight (tied embeddings)."""
    get_head, get_embedding = getattr(model, "get_output_embeddings", None), getattr(model, "get_input_embeddings", None)
    head = get_head() if callable(get_head) else None
    embedding = get_embedding() if callable(get_embedding) else None
    return head is not None and embedding is not None and getattr(head, "weight", None) is getattr(embedding, "weight", object())
