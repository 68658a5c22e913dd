"""Explain: the ways a model's parameters get counted, each derived from the model, with why it differs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from .build import parameter_count
from .data import CountLine, PeftReference

MASK_KEY = re.compile(r"^(?P<module>[\w.]*attn)\.bias$")  # a legacy causal-mask buffer key ("attn.bias")


def tied_duplicates(model: nn.Module) -> int:
    """Elements the state dict lists a second time because two names share one tensor (tied embeddings)."""
    seen: set[int] = set()
    duplicated = 0
    for _, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            duplicated += param.numel()
        seen.add(id(param))
    return duplicated


def persistent_buffers(model: nn.Module) -> int:
    """Elements of the buffers a checkpoint saves (persistent ones, which state_dict includes)."""
    params = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    state = model.state_dict(keep_vars=True)
    return sum(tensor.numel() for name, tensor in state.items() if name not in params)


def legacy_mask_buffers(model: PreTrainedModel) -> tuple[int, int]:
    """(modules, elements) of causal-mask buffers that older checkpoints of this class store and it now ignores.

    A class lists such keys in ``_keys_to_ignore_on_load_unexpected`` (GPT-2:
    ``attn.bias``); each was a (max_positions x max_positions) lower-triangular
    mask per attention module.
    """
    patterns = [MASK_KEY.match(key) for key in getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ()]
    suffixes = [match.group("module") for match in patterns if match]
    if not suffixes:
        return 0, 0
    config = model.config
    positions = int(getattr(config, "max_position_embeddings", 0) or getattr(config, "n_positions", 0) or 0)
    modules = sum(
        1 for name, _ in model.named_modules() if any(name == s or name.endswith("." + s) for s in suffixes)
    )
    return modules, modules * positions ** 2


def stores_tied_twice(config_json: Mapping[str, Any]) -> bool:
    """Whether the checkpoint stores tied weights under both names, from the model's config.json.

    transformers' save_pretrained drops a tied copy; a checkpoint written by the
    model's own code (its config.json carries an ``auto_map``), as falcon-7b's was,
    saved its whole state dict, the tied lm_head included.
    """
    return bool(config_json.get("auto_map"))


def bnb_4bit_params(model: PreTrainedModel) -> tuple[int, int]:
    """(count, quantized weights): what summing numel() shows on a bitsandbytes 4-bit model.

    transformers replaces every nn.Linear and Conv1D except the output head and
    tied modules (its get_keys_to_not_convert) by Linear4bit, whose weight is
    packed two 4-bit values per byte: a (ceil(n/2), 1) uint8 tensor.
    """
    from transformers.quantizers.base import get_keys_to_not_convert
    from transformers.quantizers.quantizers_utils import should_convert_module

    keep = get_keys_to_not_convert(model)
    total = parameter_count(model)
    quantized = 0
    for name, module in model.named_modules():
        if not (type(module) is nn.Linear or isinstance(module, Conv1D)) or not should_convert_module(name, keep):
            continue
        elements = module.weight.numel()
        total -= elements - (elements + 1) // 2
        quantized += 1
    return total, quantized


def count_lines(
    model: PreTrainedModel, reference: PeftReference | None, config_json: Mapping[str, Any]
) -> tuple[CountLine, ...]:
    """The explanation table: every usual way of counting this model, each with why it differs."""
    unique = parameter_count(model)
    lines = [
        CountLine("parameters, tied weights counted once", unique,
                  "Every distinct weight tensor once: the size of the model itself.", 0),
    ]
    hf_count = model.num_parameters()
    lines.append(CountLine(
        "transformers num_parameters()", hf_count,
        "The same walk over model.parameters(), so tied weights count once here too."
        if hf_count == unique else "transformers counts parameters() differently for this model.",
        hf_count - unique))
    if reference is not None:
        lines.append(CountLine(
            "PEFT all params (reference LoraConfig)", reference.all_params,
            f"Base plus the {reference.trainable_params:,} LoRA A/B weights PEFT adds (no modules_to_save copies "
            "in this config; each would add a full copy of its module).",
            reference.all_params - unique))
    lines.append(_checkpoint_line(model, unique, stores_tied_twice(config_json)))
    count, quantized = bnb_4bit_params(model)
    lines.append(CountLine(
        "bitsandbytes 4-bit, summing numel()", count,
        f"{quantized} Linear/Conv1D weights become packed uint8 tensors holding two 4-bit values per element, "
        "so each shows half its size; embeddings, norms, the output head and fused experts stay whole.",
        count - unique))
    return tuple(lines)


def _checkpoint_line(model: PreTrainedModel, unique: int, tied_twice: bool) -> CountLine:
    """The checkpoint's tensor total: parameters, saved buffers, legacy masks, tied weights stored twice."""
    buffers = persistent_buffers(model)
    mask_modules, masks = legacy_mask_buffers(model)
    tied = tied_duplicates(model) if tied_twice else 0
    reasons: list[str] = []
    if masks:
        reasons.append(f"{mask_modules} causal-mask buffers ({masks:,} elements) that the checkpoint still stores")
    if buffers:
        reasons.append(f"{buffers:,} elements of saved buffers")
    if tied:
        reasons.append(f"the tied output head stored a second time ({tied:,}), as the model's own code saved it")
    why = ("Adds " + "; ".join(reasons) + ".") if reasons else (
        "The checkpoint stores each parameter once and no buffers, so it equals the unique count.")
    total = unique + buffers + masks + tied
    return CountLine("checkpoint tensor total", total, why, total - unique)
