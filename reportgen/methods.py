"""Methods: LoRA and its options, and the other PEFT methods with a closed form, counted per cell.

A *variant* is a PEFT method plus options (``dora`` is LoRA with ``use_dora``).
For each (scenario, rank, variant) a *plan* says which module rows PEFT adapts,
at which rank in which layer, and why a cell cannot be expressed; the closed
form then counts the trainables layer by layer. PEFT counts the same cell
independently (``peft_count.py``) and the two must agree.

Closed forms, per adapted weight of shape (m out, n in) at rank r:

* LoRA: A (r, n) + B (m, r) = r*(m+n); a fused expert parameter (E, m, n) gets
  A (r*E, n) and B (m, r*E) from PEFT's ParamWrapper: r*E*(m+n).
  DoRA adds a magnitude vector of m; ``lora_bias`` adds a bias of m to B.
* LoHa: two Hadamard factors, each (m, r) and (r, n): 2*r*(m+n).
* LoKr: m = a*b, n = c*d factored near the square root; w1 (a, c) is full and
  w2 (b, d) is full when r >= max(b, d)/2, else (b, r) + (r, d).
* VeRA: shared frozen random projections; per layer lambda_d (r) + lambda_b (m).
* IA3: one scaling vector: m (out) per layer, n (in) for feed-forward (down) layers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import nn

from . import data
from .data import Cell, ModuleRow, Scenario
from .errors import UsageError

ALL_LINEAR = "all-linear"  # PEFT's own shorthand: every Linear/Conv1D but the output head
LORA, LOHA, LOKR, VERA, IA3 = "lora", "loha", "lokr", "vera", "ia3"
PARAM_KINDS = ("experts", "param")  # reached through target_parameters (PEFT's ParamWrapper)

# Options each PEFT method accepts here (every one has a closed form below).
METHOD_OPTIONS: dict[str, frozenset[str]] = {
    LORA: frozenset({"use_dora", "use_rslora", "lora_bias", "bias", "modules_to_save", "layers_to_transform",
                     "rank_pattern", "alpha_pattern", "lora_alpha"}),
    LOHA: frozenset({"modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern", "alpha"}),
    LOKR: frozenset({"modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern", "alpha"}),
    VERA: frozenset({"modules_to_save", "layers_to_transform", "bias"}),
    IA3: frozenset({"modules_to_save"}),
}
BIAS_MODES = ("none", "lora_only", "all")


@dataclass(frozen=True)
class Variant:
    """A PEFT method with options, under the name its cells carry in ``method``."""

    name: str
    method: str
    options: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        """One option's value, or the default."""
        return dict(self.options).get(key, default)

    @property
    def option_labels(self) -> tuple[tuple[str, str], ...]:
        return tuple((key, str(value)) for key, value in self.options)


BUILTIN_VARIANTS: dict[str, Variant] = {
    "lora": Variant("lora", LORA),
    "dora": Variant("dora", LORA, (("use_dora", True),)),
    "rslora": Variant("rslora", LORA, (("use_rslora", True),)),
    "loha": Variant("loha", LOHA),
    "lokr": Variant("lokr", LOKR),
    "vera": Variant("vera", VERA),
    "ia3": Variant("ia3", IA3),
}
DEFAULT_VARIANTS: tuple[Variant, ...] = (BUILTIN_VARIANTS["lora"],)


def make_variant(name: str, method: str, options: dict[str, Any]) -> Variant:
    """A variant checked against the options its method accepts (UsageError otherwise)."""
    if method not in METHOD_OPTIONS:
        raise UsageError(f"method {name!r}: unknown PEFT method {method!r} (one of: {', '.join(METHOD_OPTIONS)})")
    unknown = sorted(set(options) - METHOD_OPTIONS[method])
    if unknown:
        raise UsageError(
            f"method {name!r}: {method} has no option {', '.join(unknown)} here "
            f"(it accepts: {', '.join(sorted(METHOD_OPTIONS[method]))})"
        )
    if options.get("bias", "none") not in BIAS_MODES:
        raise UsageError(f"method {name!r}: bias must be one of {', '.join(BIAS_MODES)}")
    return Variant(name, method, tuple(sorted(options.items())))


def parse_methods(text: str) -> tuple[Variant, ...]:
    """``lora,dora,loha`` -> the built-in variants of those names (UsageError for an unknown one)."""
    variants: list[Variant] = []
    for name in (part.strip() for part in text.split(",")):
        if name not in BUILTIN_VARIANTS:
            raise UsageError(f"unknown method {name!r} (one of: {', '.join(BUILTIN_VARIANTS)})")
        if BUILTIN_VARIANTS[name] not in variants:
            variants.append(BUILTIN_VARIANTS[name])
    return tuple(variants)


@dataclass(frozen=True)
class ModelFacts:
    """What a cell's extras add beyond the adapted layers, read once from the model."""

    model_type: str
    total_params: int
    bias_params: int  # every parameter whose name contains "bias" (PEFT's bias="all" rule)
    module_params: tuple[tuple[str, int], ...]  # modules_to_save name -> parameters of the modules it names

    def saved_params(self, names: Iterable[str]) -> int:
        """Parameters PEFT copies for modules_to_save."""
        sizes = dict(self.module_params)
        return sum(sizes.get(name, 0) for name in names)


def model_facts(model: nn.Module, total_params: int, variants: Iterable[Variant]) -> ModelFacts:
    """The bias total and the size of every module a variant's modules_to_save names."""
    names = {name for variant in variants for name in variant.get("modules_to_save", None) or ()}
    sizes: dict[str, int] = {}
    for wanted in sorted(names):
        seen: set[int] = set()
        count = 0
        for name, module in model.named_modules():
            if name == wanted or name.endswith("." + wanted):
                for param in module.parameters():
                    if id(param) not in seen:
                        seen.add(id(param))
                        count += param.numel()
        sizes[wanted] = count
    bias = sum(param.numel() for name, param in model.named_parameters() if "bias" in name)
    model_type = str(getattr(getattr(model, "config", None), "model_type", ""))
    return ModelFacts(model_type, total_params, bias, tuple(sizes.items()))


@dataclass(frozen=True)
class Plan:
    """What PEFT adapts for one cell: module rows, rank and alpha patterns, or why nothing."""

    rows: tuple[ModuleRow, ...]
    all_linear: bool
    rank_pattern: tuple[tuple[str, int], ...] = ()  # in PEFT's order: the user's, then the fused experts'
    alpha_pattern: tuple[tuple[str, float], ...] = ()
    reason: str = ""  # why the cell is not applicable or matches nothing


def _moe_conversion(model_type: str) -> tuple[dict[str, str], dict[str, list[str]]] | None:
    """PEFT's transformers-v5 MoE rule for this model type: v4 name -> v5 parameter, and the fused ones.

    Under transformers 5, Mixtral-style models keep their experts as fused 3-D
    parameters and the router as a custom module. PEFT's LoRA maps the v4 names
    that ``all-linear`` used to reach (w1/w3 -> gate_up_proj, w2 -> down_proj,
    gate -> gate.weight) onto ``target_parameters``, and doubles the rank and
    alpha of gate_up_proj, which fuses two v4 projections.
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


def _leaf(row: ModuleRow) -> str:
    return row.path.split(".")[-1] if row.path else row.tag.split(".")[-1]


def full_key(row: ModuleRow, index: int) -> str:
    """The name PEFT matches patterns against: "model.layers.3.self_attn.q_proj"."""
    return f"{row.layer_prefix}.{index}.{row.path}" if row.layer_prefix else f"{index}.{row.path}"


def _all_linear(variant: Variant, rows: tuple[ModuleRow, ...], model_type: str, rank: int, alpha: float) -> Plan:
    """What PEFT's all-linear adapts: every Linear/Conv1D, and for LoRA on a v5 MoE model the experts and router."""
    linear = tuple(row for row in rows if row.kind in ("linear", "conv1d"))
    conversion = _moe_conversion(model_type) if variant.method == LORA else None
    if conversion is None:
        return Plan(linear, True, reason="" if linear else "this model has no Linear or Conv1D layer in its blocks")
    mapping, fused = conversion
    leaves = {_leaf(row) for row in linear} | set(mapping)
    parameters = {mapping[leaf] for leaf in leaves if leaf in mapping}
    chosen = [row for row in linear if _leaf(row) not in mapping]
    chosen += [row for row in rows if row.kind in PARAM_KINDS
               and any(full_key(row, 0).endswith("." + name) for name in parameters)]
    ranks: list[tuple[str, int]] = []
    alphas: list[tuple[str, float]] = []
    for name, olds in fused.items():
        if len(olds) > 1 and all(old in leaves for old in olds):
            ranks.append((rf".*\.{re.escape(name)}", rank * len(olds)))
            alphas.append((rf".*\.{re.escape(name)}", alpha * len(olds)))
    return Plan(tuple(chosen), True, tuple(ranks), tuple(alphas))


def select_rows(scenario: Scenario, rows: tuple[ModuleRow, ...]) -> tuple[tuple[ModuleRow, ...], str]:
    """The rows a (non all-linear) scenario names by role, tag or PEFT name, and why none."""
    chosen: list[ModuleRow] = []
    missing: list[str] = []
    targets = list(scenario.targets)
    fused_qkv = [row for row in rows if row.role == "qkv"]
    if {"q", "k", "v"} <= set(targets) and fused_qkv:
        # q, k and v together are exactly the fused projection (GPT-2 c_attn, Phi-3 qkv_proj).
        targets = [t for t in targets if t not in ("q", "k", "v")]
        chosen.extend(fused_qkv)
    for target in targets:
        matches = [row for row in rows if target in (row.role, row.tag, row.peft_target)]
        if not matches:
            missing.append(target)
        chosen.extend(row for row in matches if row not in chosen)
    if missing:
        fused = [row.tag for row in rows if row.role == "qkv"] if set(missing) & {"q", "k", "v"} else []
        if fused:
            return (), (
                f"not applicable: fused ({', '.join(fused)} holds q, k and v in one matrix, "
                f"so {', '.join(missing)} cannot be adapted alone)"
            )
        return (), f"targets {', '.join(missing)} match no module of this model"
    return tuple(chosen), ""


def default_alpha(variant: Variant, rank: int) -> float:
    """The alpha a cell uses: the variant's own, else 2*r (the walk-through's 32 at r=16)."""
    return float(variant.get("lora_alpha", variant.get("alpha", 2 * rank)))


def plan_cell(scenario: Scenario, rank: int, variant: Variant, rows: tuple[ModuleRow, ...], model_type: str) -> Plan:
    """The rows PEFT adapts for this cell with their rank patterns, or the reason it cannot."""
    user_ranks = tuple((str(k), int(v)) for k, v in (variant.get("rank_pattern") or {}).items())
    user_alphas = tuple((str(k), float(v)) for k, v in (variant.get("alpha_pattern") or {}).items())
    if scenario.targets == (ALL_LINEAR,):
        plan = _all_linear(variant, rows, model_type, rank, default_alpha(variant, rank))
    else:
        chosen, why = select_rows(scenario, rows)
        plan = Plan(chosen, False, reason=why)
    if plan.reason:
        return plan
    reason = _unsupported(variant, plan)
    return Plan(plan.rows, plan.all_linear, user_ranks + plan.rank_pattern, user_alphas + plan.alpha_pattern, reason)


def _unsupported(variant: Variant, plan: Plan) -> str:
    """Why PEFT refuses this variant on these rows ("" when it accepts it)."""
    kinds = {row.kind for row in plan.rows}
    if plan.all_linear and variant.get("layers_to_transform") is not None:
        return "not applicable: PEFT refuses layers_to_transform when target_modules is a string such as all-linear"
    if variant.method == LORA:
        for option in ("use_dora", "lora_bias"):
            if variant.get(option) and kinds & set(PARAM_KINDS):
                return f"not applicable: PEFT's ParamWrapper (fused experts, router) does not work with {option}=True"
        return ""
    if kinds & set(PARAM_KINDS):
        return f"not applicable: target_parameters (fused experts, router) are LoRA-only in PEFT, not {variant.method}"
    if variant.method in (LOHA, LOKR) and "conv1d" in kinds:
        return f"not applicable: PEFT's {variant.method} supports Linear and Conv1d/2d, not GPT-2's Conv1D"
    return ""


def pattern_value(patterns: tuple[tuple[str, Any], ...], key: str, default: Any) -> Any:
    """PEFT's get_pattern_key: the first pattern that matches the end of key at a dot boundary."""
    for pattern, value in patterns:
        if re.match(rf"(.*\.)?({pattern})$", key):
            return value
    return default


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """Two factors of dimension, as close to its square root as LoKr takes them (smaller first)."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    limit = dimension if factor == -1 else factor
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n or new_m > limit:
            break
        m, n = new_m, new_n
    return min(m, n), max(m, n)


def lokr_params(out_features: int, in_features: int, rank: int) -> int:
    """LoKr's trainables for one Linear: w1 (a, c) full; w2 (b, d) full or low-rank (b, r) + (r, d)."""
    out_l, out_k = factorization(out_features)
    in_m, in_n = factorization(in_features)
    w1 = out_l * in_m
    if rank >= max(out_k, in_n) / 2:
        return w1 + out_k * in_n
    return w1 + rank * (out_k + in_n)


def layer_trainable(variant: Variant, row: ModuleRow, rank: int) -> int:
    """One layer's trainables of one module type at this (effective) rank."""
    out_features, in_features = row.shape
    if variant.method == LORA:
        # A fused (experts, out, in) parameter gets one A of (r * experts, in) and one B of (out, r * experts).
        count = data.lora_matrix_params(out_features, in_features, rank * row.experts)
        if variant.get("use_dora"):
            count += out_features  # DoRA's magnitude vector, one per output feature
        if variant.get("lora_bias"):
            count += out_features  # a bias on lora_B
        return count
    if variant.method == LOHA:
        return 2 * rank * (out_features + in_features)
    if variant.method == LOKR:
        return lokr_params(out_features, in_features, rank)
    if variant.method == VERA:
        return rank + out_features  # lambda_d (r) and lambda_b (out)
    return in_features if row.role == "down" else out_features  # IA3


def adapted_layers(variant: Variant, row: ModuleRow) -> tuple[int, ...]:
    """The layer indices PEFT adapts for this row (all, or those in layers_to_transform)."""
    wanted = variant.get("layers_to_transform")
    if wanted is None:
        return row.layer_indices or tuple(range(row.layers))
    wanted_set = {wanted} if isinstance(wanted, int) else set(wanted)
    return tuple(index for index in row.layer_indices if index in wanted_set)


def scaling(variant: Variant, rank: int) -> float | None:
    """The adapter scaling: alpha/r, or alpha/sqrt(r) with rsLoRA (None for VeRA and IA3)."""
    if variant.method not in (LORA, LOHA, LOKR):
        return None
    alpha = default_alpha(variant, rank)
    return alpha / math.sqrt(rank) if variant.get("use_rslora") else alpha / rank


def _extras(variant: Variant, plan: Plan, facts: ModelFacts) -> list[tuple[str, int]]:
    """Trainables beyond the adapters: biases and modules_to_save copies."""
    extras: list[tuple[str, int]] = []
    bias = variant.get("bias", "none")
    if bias == "all":
        extras.append(("every bias (bias=all)", facts.bias_params))
    elif bias == "lora_only":
        count = sum(row.bias_params // row.layers * len(adapted_layers(variant, row)) for row in plan.rows)
        extras.append(("biases of the adapted layers (bias=lora_only)", count))
    saved = variant.get("modules_to_save") or ()
    if saved:
        extras.append((f"modules_to_save copies ({', '.join(saved)})", facts.saved_params(saved)))
    return extras


def formula_cell(
    scenario: Scenario, rank: int, variant: Variant, rows: tuple[ModuleRow, ...], facts: ModelFacts
) -> tuple[Cell, Plan]:
    """A cell counted by the closed form alone (PEFT's count is added by the peft stage)."""
    plan = plan_cell(scenario, rank, variant, rows, facts.model_type)
    common: dict[str, Any] = dict(scenario=scenario.name, rank=rank, method=variant.name, options=variant.option_labels,
                  scaling=scaling(variant, rank))
    if plan.reason:
        status = data.NOT_APPLICABLE if plan.reason.startswith("not applicable") else data.NO_MATCH
        cell = Cell(targets=scenario.targets, matrices=0, targeted_params=0, formula_trainable=None,
                    peft_trainable=None, percent_of_targeted=None, percent_of_model=None, status=status,
                    note=plan.reason, **common)
        return cell, plan
    trainable = targeted = matrices = 0
    terms: list[str] = []
    for row in plan.rows:
        layers = adapted_layers(variant, row)
        counts = [layer_trainable(variant, row, pattern_value(plan.rank_pattern, full_key(row, i), rank))
                  for i in layers]
        trainable += sum(counts)
        targeted += row.shape[0] * row.shape[1] * row.experts * len(layers)
        matrices += row.experts * len(layers)
        per_layer = sorted(set(counts))
        terms.append(f"{row.tag} {per_layer[0]:,} x {len(layers)}" if len(per_layer) == 1
                     else f"{row.tag} {sum(counts):,} over {len(layers)} layers")
    for label, count in _extras(variant, plan, facts):
        trainable += count
        terms.append(f"{label} {count:,}")
    cell = Cell(
        targets=tuple(row.peft_target for row in plan.rows),
        matrices=matrices,
        targeted_params=targeted,
        formula_trainable=trainable,
        peft_trainable=None,
        percent_of_targeted=data.percent(trainable, targeted),
        percent_of_model=data.percent(trainable, facts.total_params),
        status=data.OK,
        formula=" + ".join(terms),
        **common,
    )
    return cell, plan
