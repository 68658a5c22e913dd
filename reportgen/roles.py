"""Roles: what a module does (q, k, v, o, qkv, gate, up, down, ...), from its name and place.

One generic rule serves every family: the leaf name says the role, and where a
leaf name is shared (GPT-2's ``c_proj``, Falcon's ``dense``) the parent block
(attention or MLP) decides. The shapes each role must have follow from the
config alone (:func:`expected_shape`), which is the walk-through's "manual
verification" generalised.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .data import Dimensions

ATTENTION_WORDS = ("attn", "attention")
MLP_WORDS = ("mlp", "feed_forward", "ffn", "moe", "experts")

ROLE_BY_LEAF: dict[str, str] = {
    "q_proj": "q", "query": "q", "wq": "q", "Wq": "q", "q_lin": "q",
    "k_proj": "k", "key": "k", "wk": "k", "Wk": "k", "k_lin": "k",
    "v_proj": "v", "value": "v", "wv": "v", "Wv": "v", "v_lin": "v",
    "o_proj": "o", "wo": "o", "out_lin": "o",
    "qkv_proj": "qkv", "c_attn": "qkv", "query_key_value": "qkv", "Wqkv": "qkv", "W_pack": "qkv",
    "gate_proj": "gate", "w1": "gate",
    "up_proj": "up", "w3": "up", "c_fc": "up", "dense_h_to_4h": "up", "fc1": "up", "fc_in": "up",
    "down_proj": "down", "w2": "down", "dense_4h_to_h": "down", "fc2": "down", "fc_out": "down",
    "gate_up_proj": "gate_up",
    "gate": "router", "router": "router",
    # Multi-head latent attention (DeepSeek-V2/V3): q through a low-rank pair, k and v from one latent.
    "q_a_proj": "q_latent", "q_b_proj": "q_latent",
    "kv_a_proj_with_mqa": "kv_latent", "kv_b_proj": "kv_latent",
}
# Leaf names whose role depends on the block they sit in.
ROLE_BY_GROUP: dict[str, dict[str, str]] = {
    "c_proj": {"attention": "o", "mlp": "down"},
    "dense": {"attention": "o", "mlp": "down"},
    "proj": {"attention": "o", "mlp": "down"},
    "out_proj": {"attention": "o"},  # a Mamba mixer's out_proj is no attention output
}
ATTENTION_ROLES = ("q", "k", "v", "qkv", "o", "q_latent", "kv_latent")
ROLE_ORDER = ("q", "q_latent", "k", "v", "kv_latent", "qkv", "o", "router", "gate", "up", "gate_up", "down", "other")


def group_of(path: str) -> str:
    """attention, mlp or other, from the module path inside a layer (e.g. ``self_attn.q_proj``)."""
    parents = path.lower().split(".")[:-1]
    if any(word in part for part in parents for word in ATTENTION_WORDS):
        return "attention"
    if any(word in part for part in parents for word in MLP_WORDS):
        return "mlp"
    return "other"


def role_of(path: str) -> str:
    """The role of a module (or fused parameter) from its path inside a layer."""
    leaf = path.split(".")[-1]
    group = group_of(path)
    if leaf in ROLE_BY_GROUP:
        return ROLE_BY_GROUP[leaf].get(group, "other")
    role = ROLE_BY_LEAF.get(leaf, "other")
    if role in ATTENTION_ROLES and group == "mlp":
        return "other"
    return role


def _first(config: Any, *names: str) -> int | None:
    """The first of these attributes that holds one positive width (a per-layer list is not one width)."""
    for name in names:
        try:
            value = getattr(config, name, None)
        except RuntimeError:  # AmbiguousGlobalPerLayerAttributeError: a per-layer attribute read globally (Gemma-4)
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _per_layer(config: Any, *names: str) -> bool:
    """Whether one of these attributes is declared, but not as one number (a per-layer list, or ambiguous)."""
    for name in names:
        try:
            value = getattr(config, name, None)
        except RuntimeError:  # transformers' AmbiguousGlobalPerLayerAttributeError
            return True
        if value is not None and not isinstance(value, int):
            return True
    return False


def text_config(config: Any) -> Any:
    """The language model's config: the config itself, or its text part on a composite model."""
    return config.get_text_config(decoder=True)


def dimensions(config: Any) -> Dimensions:
    """Hidden size, heads, kv heads, head_dim, intermediate size, experts, read from the language model's config.

    A width the config does not declare as one number (an attention-free model has
    no heads; Gemma-3n's intermediate size is per layer) is 0, and no shape rule uses it.
    """
    config = text_config(config)
    hidden = _first(config, "hidden_size", "n_embd", "d_model") or 0
    heads = _first(config, "num_attention_heads", "n_head") or 0
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        # Falcon's original layout: multi-query attention shares one k and one v head
        # (its config still carries num_kv_heads = num_attention_heads, unused).
        kv_heads = 1
    else:
        kv_heads = _first(config, "num_key_value_heads", "num_kv_heads", "n_head_kv") or heads
    head_dim = _first(config, "head_dim") or (hidden // heads if heads else 0)
    intermediate = _first(config, "intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim", "dff")
    if intermediate is None:
        # GPT-2 leaves n_inner unset for 4 x hidden; a per-layer value is no single width.
        per_layer = _per_layer(config, "intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim", "dff")
        intermediate = 0 if per_layer else 4 * hidden
    return Dimensions(
        hidden_size=hidden,
        num_layers=_first(config, "num_hidden_layers", "n_layer", "num_layers") or 0,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=_first(config, "vocab_size") or 0,
        num_experts=_first(config, "num_local_experts", "num_experts", "n_routed_experts") or 1,
        expert_intermediate_size=_first(config, "moe_intermediate_size", "expert_intermediate_size") or 0,
        shared_intermediate_size=_shared_width(config),
        attention_input=_first(config, "attention_hidden_size") or hidden,
    )


def _shared_width(config: Any) -> int:
    """The shared experts' MLP width: declared (Qwen2-MoE), or one expert's width x the shared count (DeepSeek)."""
    declared = _first(config, "shared_expert_intermediate_size")
    if declared:
        return declared
    width, count = _first(config, "moe_intermediate_size"), _first(config, "n_shared_experts", "num_shared_experts")
    return width * count if width and count else 0


def block_dimensions(dims: Dimensions, path: str, kind: str) -> Dimensions | None:
    """The widths a module at this path in a block must follow: the experts' own MLP width inside experts,
    the shared experts' inside shared experts; None where the config says nothing about it."""
    lowered = path.lower()
    if "shared_expert" in lowered:
        width = dims.shared_intermediate_size
    elif kind == "experts" or "experts" in lowered.split("."):
        width = dims.expert_intermediate_size or dims.intermediate_size
    else:
        return dims
    return replace(dims, intermediate_size=width) if width else None


def expected_shape(role: str, dims: Dimensions) -> tuple[int, int] | None:
    """The (out_features, in_features) a module of this role must have, or None if no rule."""
    hidden, inter = dims.hidden_size, dims.intermediate_size
    q_width = dims.num_attention_heads * dims.head_dim
    kv_width = dims.num_key_value_heads * dims.head_dim
    shapes: dict[str, tuple[int, int]] = {
        "q": (q_width, hidden),
        "k": (kv_width, hidden),
        "v": (kv_width, hidden),
        "qkv": (q_width + 2 * kv_width, hidden),
        "o": (hidden, q_width),
        "gate": (inter, hidden),
        "up": (inter, hidden),
        "gate_up": (2 * inter, hidden),
        "down": (hidden, inter),
        "router": (dims.num_experts, hidden),
    }
    shape = shapes.get(role)
    if shape is None or 0 in shape or (role == "router" and dims.num_experts < 2):
        return None  # a width the config does not declare: no rule
    return shape
