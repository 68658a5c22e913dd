"""Analyse: walk a meta model's real modules -> module table and model card (cells: reportgen.methods)."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from .data import ModelInfo, ModuleRow, Scenario
from .methods import ALL_LINEAR
from .roles import ATTENTION_ROLES, ROLE_ORDER, Dimensions, expected_shape, group_of, role_of

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

    path: str  # inside the layer, as PEFT keys it: "self_attn.q_proj", "mlp.experts.gate_up_proj"
    kind: str  # linear, conv1d, experts (a fused 3-D parameter), param (a 2-D weight of another module)
    shape: tuple[int, int]
    bias: int
    experts: int
    prefix: str  # "model.layers"
    index: int

    @property
    def module_path(self) -> str:
        """The path of the module that holds the weight ("mlp.gate" for the parameter "mlp.gate.weight")."""
        return self.path.rsplit(".", 1)[0] if self.kind in ("experts", "param") else self.path


def _layer_path(name: str) -> tuple[str, int, str] | None:
    """"model.layers.3.self_attn.q_proj" -> ("model.layers", 3, "self_attn.q_proj"); None outside the blocks."""
    match = LAYER_INDEX.search(name + ".")
    if match is None:
        return None
    path = (name + ".")[match.end():].rstrip(".")
    return (name[: match.start()], int(match.group(1)), path) if path else None


def _weights(model: nn.Module) -> list[_Weight]:
    """Every Linear, Conv1D, fused expert parameter and other 2-D weight (a router) inside the repeated blocks."""
    found: list[_Weight] = []
    for name, module in model.named_modules():
        place = _layer_path(name)
        if place is None:
            continue
        prefix, index, path = place
        bias = module.bias.numel() if isinstance(getattr(module, "bias", None), nn.Parameter) else 0
        if isinstance(module, nn.Linear):
            found.append(_Weight(path, "linear", (module.out_features, module.in_features), bias, 1, prefix, index))
        elif isinstance(module, Conv1D):
            in_features, out_features = module.weight.shape  # Conv1D stores (in_features, out_features)
            found.append(_Weight(path, "conv1d", (out_features, in_features), bias, 1, prefix, index))
        elif not isinstance(module, nn.Embedding):
            found.extend(_parameter_weights(module, path, prefix, index))
    return found


def _parameter_weights(module: nn.Module, path: str, prefix: str, index: int) -> list[_Weight]:
    """Fused expert parameters (experts, out, in) and 2-D weights (a router's (experts, hidden)) of a module."""
    transposed = bool(getattr(module, "is_transposed", False))
    found: list[_Weight] = []
    for param_name, param in module.named_parameters(recurse=False):
        if param.dim() == 3:
            experts, first, second = param.shape  # (experts, out, in) unless transposed
            shape = (second, first) if transposed else (first, second)
            found.append(_Weight(f"{path}.{param_name}", "experts", shape, 0, experts, prefix, index))
        elif param.dim() == 2 and param_name == "weight":
            out_features, in_features = param.shape
            found.append(_Weight(f"{path}.{param_name}", "param", (out_features, in_features), 0, 1, prefix, index))
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
    tags = _short_tags([weights[0].module_path if weights[0].kind == "param" else path
                        for path, weights in by_path.items()])
    rows: list[ModuleRow] = []
    for path, weights in by_path.items():
        first = weights[0]
        shapes = {w.shape for w in weights}
        role = role_of(first.module_path if first.kind == "param" else path)
        tag = tags[first.module_path if first.kind == "param" else path]
        layers = len(weights)
        params = sum(w.shape[0] * w.shape[1] * w.experts for w in weights)
        expected = expected_shape(role, dims)
        expected_params = None
        if expected is not None:
            expected_params = expected[0] * expected[1] * first.experts * dims.num_layers
        rows.append(
            ModuleRow(
                tag=tag,
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
                # a 2-D weight of another module is reached through target_parameters, by its parameter name
                peft_target=f"{tag}.weight" if first.kind == "param" else tag,
                path=path,
                layer_prefix=first.prefix,
                layer_indices=tuple(sorted(w.index for w in weights)),
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
    output_emb = model.get_output_embeddings()  # type: ignore[no-untyped-call]
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


def default_scenarios(rows: tuple[ModuleRow, ...], extra: tuple[Scenario, ...] = ()) -> tuple[Scenario, ...]:
    """The seed's three, then one single-module scenario per module type, then the user's own."""
    singles = tuple(Scenario(row.tag, (row.tag,), f"{row.tag} alone") for row in rows)
    return SEED_SCENARIOS + singles + extra
