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

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import data
from .data import Cell, ModuleRow, Scenario
from .rows import LANGUAGE_MODEL, OUTPUT_HEAD
from .formatting import percent
from .moe import conversion_note, convert_targets, moe_conversion
from .variants import ALL_LINEAR, IA3, LOHA, LOKR, LORA, PARAM_KINDS, VERA, Variant
from .roles import ROLE_ORDER

@dataclass(frozen=True)
class Plan:
    """What PEFT adapts for one cell: the names a user writes, the rows and layers they match, or why nothing."""

    rows: tuple[ModuleRow, ...]  # every row with at least one adapted weight
    all_linear: bool
    rank_pattern: tuple[tuple[str, int], ...] = ()  # in PEFT's order: the user's, then the fused experts'
    alpha_pattern: tuple[tuple[str, float], ...] = ()
    reason: str = ""  # why the cell is not applicable or matches nothing
    status: data.CellStatus = data.NOT_APPLICABLE  # which of the two, when there is a reason
    modules: tuple[str, ...] = ()  # target_modules, as PEFT is given them ("all-linear" aside)
    parameters: tuple[str, ...] = ()  # target_parameters
    layers: tuple[tuple[int | None, ...], ...] = ()  # per row: the layers adapted (None: outside the blocks)
    conversion: str = ""  # what PEFT's transformers-5 MoE conversion does to the names, in words

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of the model the cell adapts, language model first."""
        return tuple(dict.fromkeys(row.part for row in self.rows))


def _leaf(row: ModuleRow) -> str:
    return row.path.split(".")[-1] if row.path else row.tag.split(".")[-1]


def full_key(row: ModuleRow, index: int | None) -> str:
    """The name PEFT matches patterns against: "model.layers.3.self_attn.q_proj"; a module outside the blocks: its name."""
    if index is None:
        return row.path
    return f"{row.layer_prefix}.{index}.{row.path}" if row.layer_prefix else f"{index}.{row.path}"


def name_matches(key: str, names: Iterable[str]) -> bool:
    """PEFT's rule for a list of targets: the key is a name, or ends with "." + a name."""
    return any(key == name or key.endswith("." + name) for name in names)


# PEFT's layers_to_transform reads the layer from the first numbered segment of the key (tuners_utils).
PEFT_LAYER_INDEX = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")


def _in_layers(key: str, wanted: Any) -> bool:
    """Whether PEFT's layers_to_transform keeps this key (the index it reads from the name is wanted)."""
    if wanted is None or (isinstance(wanted, list) and not wanted):
        return True
    match = PEFT_LAYER_INDEX.match(key)
    if match is None:
        return False
    index = int(match.group("idx"))
    return index == wanted if isinstance(wanted, int) else index in wanted


def _row_layers(row: ModuleRow) -> tuple[int | None, ...]:
    return row.layer_indices if row.layer_prefix else (None,)


def _expand(
    variant: Variant, rows: tuple[ModuleRow, ...], modules: Iterable[str], parameters: Iterable[str]
) -> tuple[tuple[ModuleRow, ...], tuple[tuple[int | None, ...], ...]]:
    """Every row and layer PEFT's name matching reaches: modules by target_modules, 2-D/3-D weights by target_parameters.

    The names match anywhere in the model (a vision tower's q_proj too), as PEFT's
    do; layers_to_transform filters target_modules only, as in PEFT.
    """
    modules, parameters = tuple(modules), tuple(parameters)
    wanted = variant.get("layers_to_transform")
    chosen: list[ModuleRow] = []
    layers: list[tuple[int | None, ...]] = []
    for row in rows:
        if row.kind in PARAM_KINDS:
            hit = tuple(i for i in _row_layers(row) if name_matches(full_key(row, i), parameters))
        else:
            # A Linear's weight is a parameter too: the v5 MoE rule maps a router Linear "gate" to "gate.weight".
            hit = tuple(i for i in _row_layers(row)
                        if (name_matches(full_key(row, i), modules) and _in_layers(full_key(row, i), wanted))
                        or name_matches(full_key(row, i) + ".weight", parameters))
        if hit:
            chosen.append(row)
            layers.append(hit)
    return tuple(chosen), tuple(layers)


def _all_linear_names(variant: Variant, rows: tuple[ModuleRow, ...], model_type: str) -> tuple[str, ...] | None:
    """The names PEFT's all-linear becomes on a v5 MoE model (every Linear's leaf and the v4 expert names), else None."""
    conversion = moe_conversion(model_type) if variant.method == LORA else None
    if conversion is None:
        return None
    leaves = {_leaf(row) for row in rows if row.kind in ("linear", "conv1d") and row.part != OUTPUT_HEAD}
    return tuple(sorted(leaves | set(conversion[0])))


def _all_linear(variant: Variant, rows: tuple[ModuleRow, ...], model_type: str, rank: int, alpha: float) -> Plan:
    """What PEFT's all-linear adapts: every Linear/Conv1D but the head; for LoRA on a v5 MoE model, by name, experts too."""
    names = _all_linear_names(variant, rows, model_type)
    if names is None:
        chosen = tuple(row for row in rows if row.kind in ("linear", "conv1d") and row.part != OUTPUT_HEAD)
        if not chosen:
            return Plan((), True, reason="not applicable: this model has no Linear or Conv1D layer to adapt")
        return Plan(chosen, True, layers=tuple(_row_layers(row) for row in chosen))
    modules, parameters, ranks, alphas = convert_targets(variant, names, model_type, rank, alpha)
    chosen, layers = _expand(variant, rows, modules, parameters)
    left = [row.tag for row in rows if row.kind in ("linear", "conv1d") and row.part != OUTPUT_HEAD
            and row not in chosen]
    note = (f"PEFT's transformers-5 MoE conversion maps {', '.join(n for n in names if n not in modules)} onto the "
            f"fused experts, so these Linear layers get no adapter: {', '.join(dict.fromkeys(left))}") if left else ""
    return Plan(chosen, True, ranks, alphas, modules=modules, parameters=parameters, layers=layers, conversion=note)


def _parent(row: ModuleRow) -> tuple[str, str]:
    """The block a module sits in: its layer list and its path there, less its own name."""
    return row.layer_prefix, row.path.rpartition(".")[0]


NO_MODULE = "match no module of this model"  # what a no_match cell's note says


def _same_block(row: ModuleRow, other: ModuleRow) -> bool:
    """Whether two modules sit in one attention block: the same parent, or sibling parents (BERT's
    attention.self.query and attention.output.dense); a Mamba mixer's out_proj beside self_attn is not."""
    (prefix, parent), (other_prefix, other_parent) = _parent(row), _parent(other)
    grandparent = parent.rpartition(".")[0]
    return prefix == other_prefix and (
        parent == other_parent or (bool(grandparent) and grandparent == other_parent.rpartition(".")[0]))


def _named(
    scenario: Scenario, rows: tuple[ModuleRow, ...]
) -> tuple[tuple[str, ...], tuple[str, ...], data.CellStatus, str]:
    """The names a (non all-linear) scenario hands PEFT, as target_modules and target_parameters, and why none.

    A target that names a module as PEFT matches names (the module's name is it,
    or ends with "." + it) is handed on as given: "c_proj" reaches GPT-2's
    attn.c_proj and mlp.c_proj alike. Else a 2-D or 3-D weight's name ("gate.weight",
    or a router's tag "gate"). Else a role (q, k, v, o, ...), looked up in the
    language model: q, k and v together become a fused qkv projection.
    """
    modules: list[str] = []
    parameters: list[str] = []
    missing: list[str] = []
    targets = list(scenario.targets)
    language = tuple(row for row in rows if row.part == LANGUAGE_MODEL) or rows

    def add(row: ModuleRow) -> None:
        names = parameters if row.kind in PARAM_KINDS else modules
        if row.peft_target not in names:
            names.append(row.peft_target)

    for fused_role, parts in (("qkv", ("q", "k", "v")), ("kv_latent", ("k", "v"))):
        fused = [row for row in language if row.role == fused_role]
        if set(parts) <= set(targets) and fused:
            # q, k and v together are exactly the fused projection (GPT-2 c_attn, Phi-3 qkv_proj);
            # k and v together are multi-head latent attention's kv_a_proj_with_mqa and kv_b_proj.
            targets = [t for t in targets if t not in parts]
            for row in fused:
                add(row)
    attention = [row for row in language if row.role in ("q", "k", "v", "qkv", "q_latent", "kv_latent")]
    for target in targets:
        reached = [row for row in rows if any(name_matches(full_key(row, i), [target]) for i in _row_layers(row))]
        if reached:  # a name, handed to PEFT as given: a module's, else a 2-D/3-D weight's
            names = modules if any(row.kind not in PARAM_KINDS for row in reached) else parameters
            if target not in names:
                names.append(target)
            continue
        # A router reached by its tag ("gate" for mlp.gate.weight), not the role gate; else a role.
        matches = [row for row in rows if row.kind in PARAM_KINDS and target == row.tag]
        if not matches:
            matches = [row for row in language if target == row.role or (target == "q" and row.role == "q_latent")]
            if target == "o":
                matches = [row for row in matches if any(_same_block(row, other) for other in attention)]
        if not matches:
            missing.append(target)
        for row in matches:
            add(row)
    if missing:
        for fused_role, label in (("qkv", "holds q, k and v in one matrix"),
                                  ("kv_latent", "makes k and v from one latent (multi-head latent attention)")):
            fused_tags = [row.tag for row in language if row.role == fused_role]
            if fused_tags and set(missing) & {"q", "k", "v"}:
                return (), (), data.NOT_APPLICABLE, (
                    f"not applicable: fused ({', '.join(dict.fromkeys(fused_tags))} {label}, "
                    f"so {', '.join(missing)} cannot be adapted alone)")
        why = f"targets {', '.join(missing)} {NO_MODULE}"
        if set(missing) <= set(ROLE_ORDER):  # roles: say what the model has instead (an SSM's in_proj, out_proj ...)
            held = ", ".join(dict.fromkeys(row.tag for row in language))
            why += f" (its language model holds {held if len(held) <= 120 else held[:117].rsplit(',', 1)[0] + ', ...'})"
        return (), (), data.NO_MATCH, why
    return tuple(modules), tuple(parameters), data.OK, ""


def default_alpha(variant: Variant, rank: int) -> float:
    """The alpha a cell uses: the variant's own, else 2*r (the walk-through's 32 at r=16)."""
    return float(variant.get("lora_alpha", variant.get("alpha", 2 * rank)))


def plan_cell(scenario: Scenario, rank: int, variant: Variant, rows: tuple[ModuleRow, ...], model_type: str) -> Plan:
    """The rows and layers PEFT adapts for this cell with their rank patterns, or the reason it cannot."""
    user_ranks = tuple((str(k), int(v)) for k, v in (variant.get("rank_pattern") or {}).items())
    user_alphas = tuple((str(k), float(v)) for k, v in (variant.get("alpha_pattern") or {}).items())
    alpha = default_alpha(variant, rank)
    if scenario.targets == (ALL_LINEAR,):
        plan = _all_linear(variant, rows, model_type, rank, alpha)
    else:
        modules, parameters, status, why = _named(scenario, rows)
        if why:
            return Plan((), False, reason=why, status=status)
        converted, more, ranks, alphas = convert_targets(variant, modules, model_type, rank, alpha)
        chosen, layers = _expand(variant, rows, converted, tuple(dict.fromkeys(parameters + more)))
        plan = Plan(chosen, False, ranks, alphas, modules=modules, parameters=parameters, layers=layers,
                    conversion=conversion_note(modules, converted, more))
        if not chosen:
            names = ", ".join(modules + parameters)
            plan = dataclasses.replace(plan, reason=f"not applicable: {names} reach no layer PEFT adapts here")
    if plan.reason:
        return plan
    reason = _unsupported(variant, plan)
    return dataclasses.replace(plan, rank_pattern=user_ranks + plan.rank_pattern,
                               alpha_pattern=user_alphas + plan.alpha_pattern, reason=reason)


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


def scaling(variant: Variant, rank: int) -> float | None:
    """The adapter scaling: alpha/r, or alpha/sqrt(r) with rsLoRA (None for VeRA and IA3)."""
    if variant.method not in (LORA, LOHA, LOKR):
        return None
    alpha = default_alpha(variant, rank)
    return alpha / math.sqrt(rank) if variant.get("use_rslora") else alpha / rank


def _extras(variant: Variant, plan: Plan, facts: data.ModelFacts) -> list[tuple[str, int]]:
    """Trainables beyond the adapters: biases and modules_to_save copies."""
    extras: list[tuple[str, int]] = []
    bias = variant.get("bias", "none")
    if bias == "all":
        extras.append(("every bias (bias=all)", facts.bias_params))
    elif bias == "lora_only":
        count = sum(row.bias_params // row.layers * len(layers) for row, layers in zip(plan.rows, plan.layers))
        extras.append(("biases of the adapted layers (bias=lora_only)", count))
    saved = variant.get("modules_to_save") or ()
    if saved:
        extras.append((f"modules_to_save copies ({', '.join(saved)})", facts.saved_params(saved)))
    return extras


def formula_cell(
    scenario: Scenario, rank: int, variant: Variant, rows: tuple[ModuleRow, ...], facts: data.ModelFacts
) -> tuple[Cell, Plan]:
    """A cell counted by the closed form alone (PEFT's count is added by the peft stage)."""
    plan = plan_cell(scenario, rank, variant, rows, facts.model_type)
    common: dict[str, Any] = dict(scenario=scenario.name, rank=rank, method=variant.name, options=variant.option_labels,
                  scaling=scaling(variant, rank))
    if plan.reason:
        status = plan.status
        cell = Cell(targets=scenario.targets, matrices=0, targeted_params=0, formula_trainable=None,
                    peft_trainable=None, percent_of_targeted=None, percent_of_model=None, status=status,
                    note=plan.reason, **common)
        return cell, plan
    trainable = targeted = matrices = 0
    terms: list[str] = []
    for row, layers in zip(plan.rows, plan.layers):
        counts = [layer_trainable(variant, row, pattern_value(plan.rank_pattern, full_key(row, i), rank))
                  for i in layers]
        trainable += sum(counts)
        targeted += row.shape[0] * row.shape[1] * row.experts * len(layers)
        matrices += row.experts * len(layers)
        per_layer = sorted(set(counts))
        label = row.tag if row.part == LANGUAGE_MODEL else f"{row.tag} ({row.part})"
        terms.append(f"{label} {per_layer[0]:,} x {len(layers)}" if len(per_layer) == 1
                     else f"{label} {sum(counts):,} over {len(layers)} layers")
    for label, count in _extras(variant, plan, facts):
        trainable += count
        terms.append(f"{label} {count:,}")
    cell = Cell(
        targets=plan.modules + plan.parameters if not plan.all_linear else tuple(
            dict.fromkeys(row.peft_target for row in plan.rows)),
        matrices=matrices,
        targeted_params=targeted,
        formula_trainable=trainable,
        peft_trainable=None,
        percent_of_targeted=percent(trainable, targeted),
        percent_of_model=percent(trainable, facts.total_params),
        status=data.OK,
        formula=" + ".join(terms),
        parts=plan.parts,
        note=plan.conversion,
        **common,
    )
    return cell, plan
