"""Analyse: walk a meta model's real modules -> module table and model card (cells: reportgen.methods)."""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn
from transformers import PreTrainedModel
from transformers.pytorch_utils import Conv1D

from .build import Built, embeddings_tied, parameter_count
from .errors import ReportgenError
from .rows import HEAD, LANGUAGE_MODEL, OUTPUT_HEAD
from .data import SEED_SCENARIOS, Dimensions, ModelFacts, ModelInfo, ModuleRow, Scenario
from .variants import Variant
from .roles import ATTENTION_ROLES, ROLE_ORDER, block_dimensions, expected_shape, group_of, role_of

LAYER_INDEX = re.compile(r"\.(\d+)\.")

# Where a weight lives, from the words of its module path (the output head is found by identity).
PART_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vision tower", ("vision", "visual", "image", "vit", "siglip", "clip")),
    ("audio tower", ("audio", "speech", "sound", "whisper", "acoustic")),
    ("projector", ("projector", "connector", "mm_proj", "multi_modal", "merger")),
)


@dataclass(frozen=True)
class _Weight:
    """One adaptable weight of the model: (out, in), its bias, its expert count, where it lives."""

    path: str  # inside the layer, as PEFT keys it: "self_attn.q_proj"; outside the blocks, the whole name
    kind: str  # linear, conv1d, experts (a fused 3-D parameter), param (a 2-D weight of another module)
    shape: tuple[int, int]
    bias: int
    experts: int
    prefix: str  # "model.layers"; "" outside the repeated blocks
    index: int | None  # the layer; None outside the repeated blocks
    part: str
    tensors: tuple[tuple[int, int], ...] = ()  # (id, elements) of the weight and its bias: a shared tensor counts once

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


def part_of(name: str, head_names: tuple[str, ...] = ()) -> str:
    """The part of the model a module lives in: language model, vision tower, audio tower, projector, head."""
    if any(name == head or name.startswith(head + ".") for head in head_names):
        return HEAD
    words = name.lower().split(".")
    for part, keys in PART_WORDS:
        if any(key in word for word in words for key in keys):
            return part
    return LANGUAGE_MODEL


def _head_names(model: nn.Module) -> tuple[str, str]:
    """The output head's module name, and the module holding the rest of the head ("cls.predictions" for BERT's
    cls.predictions.decoder; "" when the head sits beside the blocks, as lm_head or model.lm_head do)."""
    get_output = getattr(model, "get_output_embeddings", None)
    head = get_output() if callable(get_output) else None
    names = [name for name, module in model.named_modules() if module is head] if head is not None else []
    if not names:
        return "", ""
    parent = names[0].rpartition(".")[0]
    holds_blocks = parent == "" or any(LAYER_INDEX.search(name + ".") for name, _ in model.get_submodule(parent)
                                       .named_modules(prefix=parent))
    return names[0], "" if holds_blocks else parent


def _weights(model: nn.Module) -> list[_Weight]:
    """Every Linear, Conv1D, fused expert parameter and other 2-D weight (a router) of the model, in one walk.

    The output head (lm_head) is marked as such: PEFT's all-linear and the
    walk-through's "all linear" leave it out, so the module table does too, but a
    scenario's names may still reach it. The rest of a head's module (BERT's
    cls.predictions.transform) is the head part of the table.
    """
    head, head_root = _head_names(model)
    found: list[_Weight] = []
    for name, module in model.named_modules():  # a shared module (Zamba's shared block) once, as PEFT sees it
        if not name:
            continue
        place = _layer_path(name)
        prefix, index, path = place if place is not None else ("", None, name)
        part = OUTPUT_HEAD if name == head else part_of(name, (head_root,) if head_root else ())
        bias = getattr(module, "bias", None)
        tensors = tuple((id(t), t.numel()) for t in (module.weight, bias) if isinstance(t, nn.Parameter)) \
            if isinstance(module, (nn.Linear, Conv1D)) else ()
        bias_size = bias.numel() if isinstance(bias, nn.Parameter) else 0
        if isinstance(module, nn.Linear):
            shape = (module.out_features, module.in_features)
            found.append(_Weight(path, "linear", shape, bias_size, 1, prefix, index, part, tensors))
        elif isinstance(module, Conv1D):
            in_features, out_features = module.weight.shape  # Conv1D stores (in_features, out_features)
            found.append(_Weight(path, "conv1d", (out_features, in_features), bias_size, 1, prefix, index, part, tensors))
        elif not isinstance(module, (nn.Embedding, nn.modules.conv._ConvNd, nn.LayerNorm)) and place is not None:
            found.extend(_parameter_weights(module, path, prefix, index, part))
    return found


def _parameter_weights(module: nn.Module, path: str, prefix: str, index: int | None, part: str) -> list[_Weight]:
    """Fused expert parameters (experts, out, in) and 2-D weights (a router's (experts, hidden)) of a module."""
    transposed = bool(getattr(module, "is_transposed", False))
    found: list[_Weight] = []
    for param_name, param in module.named_parameters(recurse=False):
        if param.dim() == 3 and min(param.shape) > 1:  # not RWKV's (1, 1, hidden) mixing coefficients
            experts, first, second = param.shape  # (experts, out, in) unless transposed
            shape = (second, first) if transposed else (first, second)
            found.append(_Weight(f"{path}.{param_name}", "experts", shape, 0, experts, prefix, index, part,
                                 ((id(param), param.numel()),)))
        elif param.dim() == 2 and param_name == "weight":
            out_features, in_features = param.shape
            found.append(_Weight(f"{path}.{param_name}", "param", (out_features, in_features), 0, 1, prefix, index, part,
                                 ((id(param), param.numel()),)))
    return found


def _short_tags(paths: list[str]) -> dict[str, str]:
    """The shortest suffix of each path that tells it apart from the others (GPT-2: attn.c_proj, mlp.c_proj).

    A suffix starting with a number is never one: PEFT would match it against the blocks themselves.
    """
    tags: dict[str, str] = {}
    for path in paths:
        parts = path.split(".")
        for size in range(1, len(parts) + 1):
            tag = ".".join(parts[-size:])
            if parts[-size].isdigit() and size < len(parts):
                continue  # "0" would also name every block "h.0" of the model, as PEFT matches names: "ffn.0"
            if sum(1 for other in paths if other == tag or other.endswith("." + tag)) == 1:
                tags[path] = tag
                break
        else:
            tags[path] = path
    return tags


PART_ORDER = (LANGUAGE_MODEL, HEAD, "projector", "vision tower", "audio tower")


def module_rows(weights: list[_Weight], dims: Dimensions) -> tuple[ModuleRow, ...]:
    """The rows of these weights: one per module type and shape, measured, and derived from the config where a rule says how.

    A row holds the weights of one name (inside the repeated blocks, the name
    within a block) and one shape in one part of the model; a module type whose
    layers differ in shape is several rows with the same tag.
    """
    groups: dict[tuple[str, str, str, tuple[int, int], str, int], list[_Weight]] = defaultdict(list)
    for weight in weights:
        groups[(weight.part, weight.prefix, weight.path, weight.shape, weight.kind, weight.experts)].append(weight)
    tags = _short_tags(sorted({_tag_path(weights[0]) for weights in groups.values()}))
    blocks: dict[str, int] = defaultdict(int)  # the measured number of blocks under each layer prefix
    for (_, prefix, *_), weights in groups.items():
        blocks[prefix] = max(blocks[prefix], 1 + max((w.index or 0) for w in weights))
    latent = any(role_of(_tag_path(weights[0])) == "kv_latent" for weights in groups.values())
    rows: list[ModuleRow] = []
    for (part, prefix, path, shape, kind, experts), weights in groups.items():
        first = weights[0]
        role = role_of(_tag_path(first))
        tag = tags[_tag_path(first)]
        indices = tuple(sorted(w.index for w in weights if w.index is not None))
        widths = block_dimensions(dims, path, kind) if part == LANGUAGE_MODEL and prefix else None
        # Multi-head latent attention's q and o take heads x (nope + rope) and heads x v_head_dim, which no
        # common width names; an attention over a wider input (Zamba2's shared block) neither: no rule.
        wider = dims.attention_input not in (0, dims.hidden_size)
        unruled = (latent or wider) and role in ATTENTION_ROLES
        expected = expected_shape(role, widths) if widths and not unruled else None
        expected_params = None
        if expected is not None:
            # Every block has it: the config's layer count must agree too; a hybrid's few blocks: the shape alone.
            layers = dims.num_layers if len(indices) == blocks[prefix] else len(indices)
            expected_params = expected[0] * expected[1] * experts * layers
        rows.append(
            ModuleRow(
                tag=tag,
                role=role,
                group=_group(role, path),
                kind=kind,
                layers=len(weights),
                shape=shape,
                params=sum(w.shape[0] * w.shape[1] * w.experts for w in weights),
                bias_params=sum(w.bias for w in weights),
                experts=experts,
                expected_shape=expected,
                expected_params=expected_params,
                # a 2-D weight of another module is reached through target_parameters, by its parameter name
                peft_target=f"{tag}.weight" if kind == "param" else tag,
                path=path,
                layer_prefix=prefix,
                layer_indices=indices,
                part=part,
            )
        )
    order = {role: index for index, role in enumerate(ROLE_ORDER)}
    parts = {part: index for index, part in enumerate(PART_ORDER)}
    kinds = {"attention": 0, "mlp": 1, "other": 2}
    return tuple(sorted(rows, key=lambda r: (parts.get(r.part, 9), kinds[r.group], order.get(r.role, 99), r.tag,
                                             r.layer_prefix, r.shape)))


def _tag_path(weight: _Weight) -> str:
    """The path a row's tag is made from: the module's, for a 2-D weight reached by its parameter name."""
    return weight.module_path if weight.kind == "param" else weight.path


def _group(role: str, path: str) -> str:
    group = group_of(path)
    if group == "other" and role in ATTENTION_ROLES:
        return "attention"
    if group == "other" and role in ("gate", "up", "down", "gate_up"):
        return "mlp"
    return group


def adaptable_params(weights: list[_Weight]) -> int:
    """These weights and their biases, each tensor once (Zamba2's shared block reuses one in several layers)."""
    return sum(dict(tensor for weight in weights for tensor in weight.tensors).values())


def model_info(
    model: PreTrainedModel, model_id: str, source: str, weights: list[_Weight], dims: Dimensions
) -> ModelInfo:
    """The model card, with tied weights counted once; ``weights`` are the module table's."""
    config = model.config
    return ModelInfo(
        id=model_id,
        source=source,
        architecture=type(model).__name__,
        model_type=str(config.model_type),
        total_params=parameter_count(model),
        linear_params=adaptable_params(weights),
        tied_embeddings=embeddings_tied(model),
        dimensions=dims,
    )


def default_scenarios(rows: tuple[ModuleRow, ...], extra: tuple[Scenario, ...] = ()) -> tuple[Scenario, ...]:
    """The seed's three, then one single-module scenario per module type, then the user's own."""
    # a tag several rows share (several shapes, towers) once; a user's scenario of the same name replaces it
    tags = [tag for tag in dict.fromkeys(row.tag for row in rows) if tag not in {scenario.name for scenario in extra}]
    singles = tuple(Scenario(tag, (tag,), f"{tag} alone") for tag in tags)
    return SEED_SCENARIOS + singles + extra


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
class Analysis:
    """The analysis stage's hand-off: the model card, the module table, the scenarios, what cells may reach."""

    info: ModelInfo
    rows: tuple[ModuleRow, ...]  # the module table
    reachable: tuple[ModuleRow, ...]  # the table and the output head: what a scenario's names may match
    scenarios: tuple[Scenario, ...]
    facts: ModelFacts
    printout: str  # the base model as transformers prints it


def analyse(built: Built, extra: tuple[Scenario, ...] = (), variants: Iterable[Variant] = ()) -> Analysis:
    """The module table, model card and scenarios of a built model (ReportgenError if nothing is adaptable)."""
    model, resolved = built.model, built.resolved
    weights = _weights(model)
    table = [weight for weight in weights if weight.part != OUTPUT_HEAD]
    rows = module_rows(table, built.dims)
    if not rows:
        raise ReportgenError(f"{resolved.id} has no Linear, Conv1D or expert weight to adapt")
    info = dataclasses.replace(model_info(model, resolved.id, resolved.source, table, built.dims),
                               build_note=built.note)
    return Analysis(
        info=info,
        rows=rows,
        reachable=rows + module_rows([weight for weight in weights if weight.part == OUTPUT_HEAD], built.dims),
        scenarios=default_scenarios(rows, extra),
        facts=model_facts(model, info.total_params, variants),
        printout=repr(model),
    )
