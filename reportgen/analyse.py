"""Analyse: walk a meta model's real modules -> module table, model card, formula cells."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from . import data
from .data import Cell, ModelInfo, ModuleRow, Scenario
from .roles import ATTENTION_ROLES, ROLE_ORDER, Dimensions, expected_shape, group_of, role_of

ALL_LINEAR = "all-linear"  # PEFT's own shorthand: every Linear/Conv1D but the output head
LAYER_INDEX = re.compile(r"\.(\d+)\.")

# The walk-through's three scenarios, by role, with the task each suits.
SEED_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("qv_only", ("q", "v"), "style/format tasks"),
    Scenario("qkvo", ("q", "k", "v", "o"), "instruction following"),
    Scenario("all_linear", (ALL_LINEAR,), "domain adaptation"),
)


@dataclass(frozen=True)
class _Weight:
    """One targetable weight in one layer: (out, in), its bias, its expert count."""

    path: str  # inside the layer, e.g. "self_attn.q_proj"
    kind: str
    shape: tuple[int, int]
    bias: int
    experts: int


def _layer_path(name: str) -> str | None:
    """"model.layers.3.self_attn.q_proj" -> "self_attn.q_proj"; None outside the repeated blocks."""
    match = LAYER_INDEX.search(name + ".")
    if match is None:
        return None
    return (name + ".")[match.end():].rstrip(".") or None


def _weights(model: nn.Module) -> list[_Weight]:
    """Every Linear, Conv1D and fused expert parameter inside the repeated blocks."""
    found: list[_Weight] = []
    for name, module in model.named_modules():
        path = _layer_path(name)
        if path is None:
            continue
        if isinstance(module, nn.Linear):
            shape = (module.out_features, module.in_features)
            bias = module.bias.numel() if module.bias is not None else 0
            found.append(_Weight(path, "linear", shape, bias, 1))
        elif isinstance(module, Conv1D):
            # Conv1D stores its weight as (in_features, out_features).
            in_features, out_features = module.weight.shape
            bias = module.bias.numel() if module.bias is not None else 0
            found.append(_Weight(path, "conv1d", (out_features, in_features), bias, 1))
        else:
            transposed = bool(getattr(module, "is_transposed", False))
            for param_name, param in module.named_parameters(recurse=False):
                if param.dim() != 3:
                    continue
                experts, first, second = param.shape  # (experts, out, in) unless transposed
                shape = (second, first) if transposed else (first, second)
                found.append(_Weight(f"{path}.{param_name}", "experts", shape, 0, experts))
    return found


def _short_tags(paths: list[str]) -> dict[str, str]:
    """The shortest suffix of each path that tells it apart from the others (GPT-2: attn.c_proj, mlp.c_proj)."""
    tags: dict[str, str] = {}
    for path in paths:
        parts = path.split(".")
        for size in range(1, len(parts) + 1):
            tag = ".".join(parts[-size:])
            if sum(1 for other in paths if other == tag or other.endswith("." + tag)) == 1:
                tags[path] = tag
                break
        else:
            tags[path] = path
    return tags


def module_rows(model: nn.Module, dims: Dimensions) -> tuple[ModuleRow, ...]:
    """The module table: one row per module type, measured and derived from the config."""
    by_path: dict[str, list[_Weight]] = defaultdict(list)
    for weight in _weights(model):
        by_path[weight.path].append(weight)
    tags = _short_tags(list(by_path))
    rows: list[ModuleRow] = []
    for path, weights in by_path.items():
        first = weights[0]
        shapes = {w.shape for w in weights}
        role = role_of(path)
        layers = len(weights)
        params = sum(w.shape[0] * w.shape[1] * w.experts for w in weights)
        expected = expected_shape(role, dims)
        expected_params = None
        if expected is not None:
            expected_params = expected[0] * expected[1] * first.experts * dims.num_layers
        rows.append(
            ModuleRow(
                tag=tags[path],
                role=role,
                group=_group(role, path),
                kind=first.kind,
                layers=layers,
                shape=first.shape if len(shapes) == 1 else max(shapes),
                params=params,
                bias_params=sum(w.bias for w in weights),
                experts=first.experts,
                expected_shape=expected,
                expected_params=expected_params,
                peft_target=tags[path],
            )
        )
    order = {role: index for index, role in enumerate(ROLE_ORDER)}
    groups = {"attention": 0, "mlp": 1, "other": 2}
    return tuple(sorted(rows, key=lambda r: (groups[r.group], order.get(r.role, 99), r.tag)))


def _group(role: str, path: str) -> str:
    group = group_of(path)
    if group == "other" and role in ATTENTION_ROLES:
        return "attention"
    if group == "other" and role in ("gate", "up", "down", "gate_up"):
        return "mlp"
    return group


def model_info(
    model: PreTrainedModel, model_id: str, source: str, rows: tuple[ModuleRow, ...], dims: Dimensions
) -> ModelInfo:
    """The model card, with tied weights counted once."""
    # parameters() yields a tied tensor once, so this is the unique count.
    total = sum(p.numel() for p in model.parameters())
    input_emb = model.get_input_embeddings()
    output_emb = model.get_output_embeddings()
    tied = (
        input_emb is not None
        and output_emb is not None
        and getattr(output_emb, "weight", None) is getattr(input_emb, "weight", object())
    )
    config = model.config
    return ModelInfo(
        id=model_id,
        source=source,
        architecture=type(model).__name__,
        model_type=str(config.model_type),
        total_params=total,
        linear_params=sum(row.params + row.bias_params for row in rows),
        tied_embeddings=bool(tied),
        num_layers=dims.num_layers,
        hidden_size=dims.hidden_size,
        num_attention_heads=dims.num_attention_heads,
        num_key_value_heads=dims.num_key_value_heads,
        head_dim=dims.head_dim,
        intermediate_size=dims.intermediate_size,
        vocab_size=dims.vocab_size,
    )


def lora_trainable_params(row: ModuleRow, rank: int) -> int:
    """LoRA's closed form over every layer of a module type: r * (m + n) per weight matrix.

    A fused expert parameter of shape (experts, out, in) gets one A of
    (r * experts, in) and one B of (out, r * experts), as PEFT's ParamWrapper builds.
    """
    out_features, in_features = row.shape
    return rank * row.experts * (out_features + in_features) * row.layers


def scenario_targets(scenario: Scenario, rows: tuple[ModuleRow, ...]) -> tuple[tuple[ModuleRow, ...], str]:
    """The module rows a scenario selects, and why it selects none (empty string when it selects some)."""
    if scenario.targets == (ALL_LINEAR,):
        chosen = tuple(row for row in rows if row.kind in ("linear", "conv1d"))
        return chosen, "" if chosen else "this model has no Linear or Conv1D layer in its blocks"
    chosen_rows: list[ModuleRow] = []
    missing: list[str] = []
    targets = list(scenario.targets)
    fused_qkv = [row for row in rows if row.role == "qkv"]
    if {"q", "k", "v"} <= set(targets) and fused_qkv:
        # q, k and v together are exactly the fused projection (GPT-2 c_attn, Phi-3 qkv_proj).
        targets = [t for t in targets if t not in ("q", "k", "v")]
        chosen_rows.extend(fused_qkv)
    for target in targets:
        matches = [row for row in rows if target in (row.role, row.tag, row.peft_target)]
        if not matches:
            missing.append(target)
        chosen_rows.extend(row for row in matches if row not in chosen_rows)
    if missing:
        fused = [row.tag for row in rows if row.role == "qkv"] if set(missing) & {"q", "k", "v"} else []
        if fused:
            return (), (
                f"not applicable: fused ({', '.join(fused)} holds q, k and v in one matrix, "
                f"so {', '.join(missing)} cannot be adapted alone)"
            )
        return (), f"targets {', '.join(missing)} match no module of this model"
    return tuple(chosen_rows), ""


def formula_cell(
    scenario: Scenario, rank: int, rows: tuple[ModuleRow, ...], total_params: int
) -> tuple[Cell, tuple[ModuleRow, ...]]:
    """A cell counted by the closed form alone (PEFT's count is added by the peft stage)."""
    chosen, why_none = scenario_targets(scenario, rows)
    if not chosen:
        status = data.NOT_APPLICABLE if why_none.startswith("not applicable") else data.NO_MATCH
        cell = Cell(
            scenario=scenario.name, targets=scenario.targets, rank=rank, method="lora",
            matrices=0, targeted_params=0, formula_trainable=None, peft_trainable=None,
            percent_of_targeted=None, percent_of_model=None, status=status, note=why_none,
        )
        return cell, chosen
    targeted = sum(row.params for row in chosen)
    trainable = sum(lora_trainable_params(row, rank) for row in chosen)
    cell = Cell(
        scenario=scenario.name,
        targets=tuple(row.peft_target for row in chosen),
        rank=rank,
        method="lora",
        matrices=sum(row.layers * row.experts for row in chosen),
        targeted_params=targeted,
        formula_trainable=trainable,
        peft_trainable=None,
        percent_of_targeted=data.percent(trainable, targeted),
        percent_of_model=data.percent(trainable, total_params),
        status=data.OK,
    )
    return cell, chosen


def default_scenarios(rows: tuple[ModuleRow, ...], extra: tuple[Scenario, ...] = ()) -> tuple[Scenario, ...]:
    """The seed's three, then one single-module scenario per module type, then the user's own."""
    singles = tuple(Scenario(row.tag, (row.tag,), f"{row.tag} alone") for row in rows)
    return SEED_SCENARIOS + singles + extra
