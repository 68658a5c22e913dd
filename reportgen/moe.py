"""PEFT's transformers-5 MoE conversion, mirrored for the closed form (LoRA only).

Under transformers 5, Mixtral- and Qwen2-MoE-style models keep their experts as
fused 3-D parameters and the router as a custom module. PEFT maps the v4 names
(w1/w3 or gate_proj/up_proj -> gate_up_proj, w2/down_proj -> down_proj, gate ->
gate.weight) onto ``target_parameters`` wherever they occur in ``target_modules``,
and doubles the rank and alpha of gate_up_proj, which fuses two v4 projections.
Which model types and names it converts is PEFT's rule, read from PEFT's own
tables; everything else the closed form decides by itself.
"""

from __future__ import annotations

import re

from .variants import LORA, Variant


def moe_conversion(model_type: str) -> tuple[dict[str, str], dict[str, list[str]]] | None:
    """PEFT's transformers-v5 MoE rule for this model type: v4 name -> v5 parameter, and the fused ones.

    Under transformers 5, Mixtral-style models keep their experts as fused 3-D
    parameters and the router as a custom module. PEFT's LoRA maps the v4 names
    (w1/w3 -> gate_up_proj, w2 -> down_proj, gate -> gate.weight; on Qwen2-MoE
    style models gate_proj/up_proj -> gate_up_proj) onto ``target_parameters``,
    wherever they occur in ``target_modules``, and doubles the rank and alpha of
    gate_up_proj, which fuses two v4 projections.
    """
    try:
        from peft.utils.transformers_weight_conversion import (  # type: ignore[attr-defined]
            _MODEL_TO_CONVERSION_PATTERN,
            _MOE_FUSED_TARGETS,
            _MOE_TARGET_MODULE_MAPPING,
        )
        from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    except ImportError:  # an older PEFT without the v5 conversion
        return None
    if get_checkpoint_conversion_mapping(model_type) is None:  # type: ignore[no-untyped-call]
        return None
    base = _MODEL_TO_CONVERSION_PATTERN.get(model_type)
    mapping = _MOE_TARGET_MODULE_MAPPING.get(base or "")
    fused = _MOE_FUSED_TARGETS.get(base or "")
    if not mapping or not fused:
        return None
    return dict(mapping), {name: list(olds) for name, olds in fused.items()}


def convert_targets(
    variant: Variant, modules: tuple[str, ...], model_type: str, rank: int, alpha: float
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, int], ...], tuple[tuple[str, float], ...]]:
    """PEFT's v5 MoE conversion of target_modules (LoRA only): (modules, parameters, rank and alpha patterns)."""
    conversion = moe_conversion(model_type) if variant.method == LORA else None
    if conversion is None:
        return modules, (), (), ()
    mapping, fused = conversion
    remaining: list[str] = []
    parameters: list[str] = []
    present: dict[str, set[str]] = {name: set() for name in fused}
    for target in modules:
        old = next((old for old in mapping if target == old or target.endswith("." + old)), None)
        if old is None:
            remaining.append(target)
            continue
        parameters.append(mapping[old])
        present.setdefault(mapping[old], set()).add(old)
    ranks: list[tuple[str, int]] = []
    alphas: list[tuple[str, float]] = []
    for name, olds in fused.items():
        if len(olds) > 1 and len(present.get(name, ())) == len(olds):
            ranks.append((rf".*\.{re.escape(name)}", rank * len(olds)))
            alphas.append((rf".*\.{re.escape(name)}", alpha * len(olds)))
    return tuple(remaining), tuple(dict.fromkeys(parameters)), tuple(ranks), tuple(alphas)


def conversion_note(modules: tuple[str, ...], kept: tuple[str, ...], parameters: tuple[str, ...]) -> str:
    """The names PEFT's v5 MoE conversion moves onto the fused expert parameters, in words ("" when none)."""
    moved = [name for name in modules if name not in kept]
    if not moved:
        return ""
    return (f"PEFT's transformers-5 MoE conversion turns {', '.join(moved)} into target_parameters "
            f"{', '.join(parameters)} (the fused experts)")
