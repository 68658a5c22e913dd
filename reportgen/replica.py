"""Replicas for the merge check: every kind of layer at full width, with fewer layers, experts and tokens.

A model too large for the merge budget is checked on a replica built from its
own config: the vocabulary cut to REPLICA_VOCAB tokens (the embedding and the
head are not what the merge check is about), every router cut to a few experts
with its top-k kept valid, and every stack of layers (the decoder, a vision
tower, an encoder) cut to one layer of each *kind* it has. A layer's kind is
its structure (module classes and parameter shapes: dense or MoE feed-forward,
attention, Mamba or linear-attention mixer, a layer of other widths) and its
entry in the config's per-layer type lists (sliding or full attention, ...),
so index rules a config states in its own words (``first_k_dense_replace``,
``attn_layer_period``, ``hybrid_override_pattern``, ...) need no knowledge here:
the model is built once at full depth on the meta device and its layers compared.
Widths are never changed.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PretrainedConfig

REPLICA_VOCAB = 512  # tokens the replica keeps
REPLICA_EXPERTS = (4, 2)  # experts per router, tried in this order
MIN_LAYERS = 2  # a stack keeps at least two layers where it has them, so a stack is exercised
EXPERT_COUNTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "zero_expert_num")
TOP_K = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "moe_k", "top_k_experts", "moe_top_k")
EXPERT_GROUPS = ("n_group", "num_expert_group")
TOPK_GROUPS = ("topk_group",)
KIND_LISTS = ("type", "sharing_mode")  # per-layer config lists whose entries make a kind of layer (layer_types,
# mlp_layer_types, Gemma 3n's kv_sharing_modes: a layer that stores its keys and values for later ones, ...)


def configs(config: PretrainedConfig) -> Iterator[PretrainedConfig]:
    """The config and every sub-config it holds (text, vision, audio, ...), each once."""
    seen: set[int] = set()
    stack = [config]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(value for value in vars(current).values() if isinstance(value, PretrainedConfig))


@dataclass(frozen=True)
class Shrunk:
    """A config with fewer experts and tokens, and what was cut, in words."""

    config: PretrainedConfig
    cuts: tuple[str, ...]
    vocab_size: int


def shrink_config(config: PretrainedConfig, experts: int) -> Shrunk:
    """The config with at most ``experts`` experts per router (top-k kept valid) and REPLICA_VOCAB tokens."""
    shrunk = copy.deepcopy(config)
    cuts: list[str] = []
    for cfg in configs(shrunk):
        cuts += _shrink_experts(cfg, experts)
        cuts += _shrink_vocab(cfg)
    vocab = vocab_size(shrunk)
    return Shrunk(shrunk, tuple(dict.fromkeys(cuts)), vocab)


def _int_attr(cfg: PretrainedConfig, name: str) -> int | None:
    value = vars(cfg).get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shrink_experts(cfg: PretrainedConfig, experts: int) -> list[str]:
    """Fewer experts in this (sub-)config; top-k, expert groups and the groups picked kept consistent."""
    counts = {name: value for name in EXPERT_COUNTS if (value := _int_attr(cfg, name)) is not None and value > experts}
    if not counts:
        return []
    top_k = max(1, experts // 2)
    groups = 2 if experts // 2 >= top_k and experts % 2 == 0 and experts >= 4 else 1
    cuts = []
    for name, value in counts.items():
        setattr(cfg, name, experts)
        cuts.append(f"{experts} of {value:,} {'zero-computation ' if name.startswith('zero') else ''}experts")
    for name in TOP_K:
        if (k := _int_attr(cfg, name)) is not None and k > top_k:
            setattr(cfg, name, top_k)
            cuts.append(f"top-{top_k} of them (was top-{k})")
        elif name in vars(cfg) and vars(cfg)[name] is None:  # DeepSeek-V2's default config leaves it unset
            setattr(cfg, name, top_k)
            cuts.append(f"top-{top_k} of them (the config leaves {name} unset)")
    for name in EXPERT_GROUPS:
        if (value := _int_attr(cfg, name)) is not None and value > groups:
            setattr(cfg, name, groups)
            cuts.append(f"{groups} expert group(s) (was {value})")
    for name in TOPK_GROUPS:
        if (value := _int_attr(cfg, name)) is not None and value > 1:
            setattr(cfg, name, 1)
            cuts.append(f"1 group picked (was {value})")
    return cuts


def _shrink_vocab(cfg: PretrainedConfig) -> list[str]:
    """REPLICA_VOCAB tokens in every vocabulary of this (sub-)config; token ids beyond it moved to its end."""
    cuts = []
    for name, value in list(vars(cfg).items()):
        if "vocab" in name and isinstance(value, int) and not isinstance(value, bool) and value > REPLICA_VOCAB:
            setattr(cfg, name, REPLICA_VOCAB)
            cuts.append(f"{REPLICA_VOCAB} of {value:,} tokens" if name == "vocab_size" else f"{name} {REPLICA_VOCAB}")
    taken = REPLICA_VOCAB - 1
    for name, value in list(vars(cfg).items()):
        if not (name.endswith("_token_id") or name.endswith("_token_index") or name.endswith("_token_ids")):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value >= REPLICA_VOCAB:
            setattr(cfg, name, taken)
            taken -= 1
        elif isinstance(value, list) and any(isinstance(v, int) and v >= REPLICA_VOCAB for v in value):
            setattr(cfg, name, [v if v < REPLICA_VOCAB else REPLICA_VOCAB - 1 for v in value])
    return cuts


def vocab_size(config: PretrainedConfig) -> int:
    """The vocabulary the model's logits span (the text config's for a composite model)."""
    try:
        text = config.get_text_config(decoder=True)
    except ValueError:  # several text configs: the first that states a vocabulary below
        text = config
    if (value := _int_attr(text, "vocab_size")) is not None:
        return value
    for cfg in configs(config):
        if (value := _int_attr(cfg, "vocab_size")) is not None:
            return value
    return REPLICA_VOCAB


@dataclass(frozen=True)
class Stack:
    """One stack of layers (an nn.ModuleList of blocks): where it is, its kinds, which layers the replica keeps."""

    path: str
    length: int
    kinds: tuple[tuple[int, ...], ...]  # the layer indices of each kind, kinds in order of first appearance
    labels: tuple[str, ...]  # each kind in words ("dense", "MoE", "sliding_attention", ...)
    config: PretrainedConfig = field(repr=False, compare=False)

    def kept(self, kind: int | None = None) -> list[int]:
        """The first layer of every kind (of one kind only when given), topped up to MIN_LAYERS from the front."""
        if kind is not None:
            return [self.kinds[min(kind, len(self.kinds) - 1)][0]]
        kept = {indices[0] for indices in self.kinds}
        for index in range(self.length):
            if len(kept) >= min(MIN_LAYERS, self.length):
                break
            kept.add(index)
        return sorted(kept)

    def describe(self, kept: list[int]) -> str:
        """'2 of 61 layers: 1 dense, 1 MoE'."""
        label_of = {index: self.labels[k] for k, indices in enumerate(self.kinds) for index in indices}
        counted = Counter(label_of[index] for index in kept)
        kinds = ", ".join(f"{n} {label}" for label, n in counted.items()) if len(self.kinds) > 1 else ""
        return f"{self.path}: {len(kept)} of {self.length} layers" + (f" ({kinds})" if kinds else "")


def layer_stacks(model: nn.Module) -> list[Stack]:
    """Every outermost stack of layers whose length a config states (num_hidden_layers, encoder_layers, ...)."""
    stacks: list[Stack] = []

    def walk(module: nn.Module, prefix: str, owner: PretrainedConfig | None) -> None:
        own = getattr(module, "config", None)
        owner = own if isinstance(own, PretrainedConfig) else owner
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            if isinstance(child, nn.ModuleList) and owner is not None and _is_stack(child, name, owner):
                stacks.append(_stack(child, path, owner))
            else:
                walk(child, f"{path}.", owner)

    walk(model, "", None)
    return stacks


def _layer_counts(cfg: PretrainedConfig) -> dict[str, int]:
    """The config's integer attributes that count layers."""
    names = [name for name in vars(cfg) if "layers" in name and name.startswith(("num_", "n_", "encoder_", "decoder_"))]
    names += ["num_hidden_layers"]
    return {name: value for name in names if isinstance(value := getattr(cfg, name, None), int) and value > 1}


def _is_stack(child: nn.ModuleList, name: str, owner: PretrainedConfig) -> bool:
    """A list of blocks, as long as a layer count of its model's config (never a list of experts)."""
    return "expert" not in name and len(child) > 1 and len(child) in _layer_counts(owner).values()


def _stack(child: nn.ModuleList, path: str, owner: PretrainedConfig) -> Stack:
    lists = {name: value for name, value in _attributes(owner).items()
             if isinstance(value, (list, tuple)) and len(value) == len(child) and any(k in name for k in KIND_LISTS)}
    by_kind: dict[object, list[int]] = {}
    moe: dict[object, bool] = {}
    classes: dict[object, str] = {}
    for index, block in enumerate(child):
        structure = tuple((name, type(module).__name__) for name, module in block.named_modules())
        shapes = tuple((name, tuple(param.shape)) for name, param in block.named_parameters())
        types = tuple(str(value[index]) for value in lists.values())
        signature = (structure, shapes, types)
        by_kind.setdefault(signature, []).append(index)
        moe[signature] = any("expert" in name for name, _ in structure)
        classes[signature] = type(block).__name__ + ("/" + "/".join(types) if types else "")
    signatures = list(by_kind)
    labels = []
    for number, kind in enumerate(signatures):
        parts = []
        if len(set(classes.values())) > 1:
            parts.append(classes[kind])
        if len(set(moe.values())) > 1:
            parts.append("MoE" if moe[kind] else "dense")
        labels.append(" ".join(parts) if parts else f"kind {number + 1} (other widths)")
    if len(signatures) == 1:
        labels = ["MoE" if moe[signatures[0]] else "dense"]
    return Stack(path, len(child), tuple(tuple(by_kind[s]) for s in signatures), tuple(labels), owner)


def _attributes(cfg: PretrainedConfig) -> dict[str, object]:
    """The config's attributes and the per-layer lists its class computes (Gemma 3n's kv_sharing_modes property)."""
    found = dict(vars(cfg))
    for name in dir(type(cfg)):
        if isinstance(getattr(type(cfg), name, None), property) and any(k in name for k in KIND_LISTS):
            try:
                value = getattr(cfg, name)
            except (AttributeError, ValueError, TypeError):
                continue
            if isinstance(value, (list, tuple)) and len({str(v) for v in value}) > 1:  # all alike: no kinds
                found[name] = value
    return found


def prune(model: nn.Module, stacks: list[Stack], keep: dict[str, list[int]]) -> None:
    """Cut each stack to the kept layers, in place, and its config to match (layer counts and per-layer lists)."""
    for stack in stacks:
        kept = keep[stack.path]
        parent_path, _, name = stack.path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        layers = getattr(parent, name)
        setattr(parent, name, nn.ModuleList([layers[index] for index in kept]))
        cfg = stack.config
        for attr, value in list(vars(cfg).items()):
            if isinstance(value, (list, tuple)) and len(value) == stack.length and attr != "architectures":
                setattr(cfg, attr, type(value)(value[index] for index in kept))
        for attr, value in _layer_counts(cfg).items():
            if value == stack.length:
                try:
                    setattr(cfg, attr, len(kept))
                except NotImplementedError:  # an alias the config refuses to set (ProphetNet's num_hidden_layers)
                    pass
        _recount_ancestors(model, stack, len(kept))
        _renumber_layer_indices(model, stack, kept)
        _cut_per_layer_inputs(model, stack, kept)


def _recount_ancestors(model: nn.Module, stack: Stack, count: int) -> None:
    """A layer count a module copied from its config when built (XLM's self.n_layers, which its forward loops
    over), on the modules that hold the stack, set to the kept count."""
    parts = stack.path.split(".")[:-1]
    ancestors = [model] + [model.get_submodule(".".join(parts[:end])) for end in range(1, len(parts) + 1)]
    for module in ancestors:
        for name, value in list(vars(module).items()):
            if name.startswith(("num_", "n_")) and "layers" in name and value == stack.length:
                setattr(module, name, count)


def _renumber_layer_indices(model: nn.Module, stack: Stack, kept: list[int]) -> None:
    """Config lists of layer indices (Mllama's cross_attention_layers, Zamba2's hybrid_layer_ids) renumbered to
    the kept layers' new positions: a model enumerates its pruned stack from 0. The modules that hold such a list
    (the same object) get the new one, and a dict keyed by its indices (Zamba2's layer_dic) its keys renumbered."""
    cfg = stack.config
    for attr, value in list(vars(cfg).items()):
        if not ("layer" in attr and isinstance(value, list) and value and len(value) != stack.length
                and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < stack.length for i in value)):
            continue
        renumbered = [kept.index(i) for i in value if i in kept]
        setattr(cfg, attr, renumbered)
        for module in model.modules():
            for name, held in list(vars(module).items()):
                if held is value:
                    setattr(module, name, renumbered)
                elif isinstance(held, dict) and held and set(held) == set(value):
                    setattr(module, name, {kept.index(i): v for i, v in held.items() if i in kept})


def _cut_per_layer_inputs(model: nn.Module, stack: Stack, kept: list[int]) -> None:
    """Gemma 3n's and Gemma 4's per-layer inputs: an embedding and a projection with hidden_size_per_layer_input
    features for every layer, laid out layer by layer; cut to the kept layers' slices (on meta, where prune runs,
    only the shapes change; real weights are sliced)."""
    width = _int_attr(stack.config, "hidden_size_per_layer_input")
    if not width:
        return
    full = stack.length * width
    rows = torch.tensor([index * width + offset for index in kept for offset in range(width)])
    for module in model.modules():
        if isinstance(module, nn.Embedding) and module.embedding_dim == full:
            module.weight = nn.Parameter(module.weight.detach()[:, rows.to(module.weight.device)]
                                         if not module.weight.is_meta else module.weight.new_empty(
                                             module.num_embeddings, len(rows)), requires_grad=False)
            module.embedding_dim = len(rows)
        elif isinstance(module, nn.Linear) and module.out_features == full:
            module.weight = nn.Parameter(module.weight.detach()[rows.to(module.weight.device)]
                                         if not module.weight.is_meta else module.weight.new_empty(
                                             len(rows), module.in_features), requires_grad=False)
            module.out_features = len(rows)


def kept_parameters(model: nn.Module, stacks: list[Stack], keep: dict[str, list[int]]) -> int:
    """The parameters a pruned model keeps (shared tensors once), without pruning it."""
    sizes = {id(param): param.numel() for param in model.parameters()}
    dropped: set[int] = set()
    kept_ids: set[int] = set()
    for stack in stacks:
        parent_path, _, name = stack.path.rpartition(".")
        layers = getattr(model.get_submodule(parent_path) if parent_path else model, name)
        for index, block in enumerate(layers):
            ids = {id(param) for param in block.parameters()}
            (kept_ids if index in keep[stack.path] else dropped).update(ids)
    return sum(size for key, size in sizes.items() if key not in dropped or key in kept_ids)
