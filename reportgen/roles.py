"""Roles: what a module does (q, k, v, o, qkv, gate, up, down, ...), from its name and place.

One generic rule serves every family: the leaf name says the role, and where a
leaf name is shared (GPT-2's ``c_proj``, Falcon's ``dense``) the parent block
(attention or MLP) decides. The shapes each role must have follow from the
config alone (:func:`expected_shape`), which is the walk-through's "manual
verification" generalised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ATTENTION_WORDS = ("attn", "attention")
MLP_WORDS = ("mlp", "feed_forward", "ffn", "moe", "experts")

ROLE_BY_LEAF: dict[str, str] = {
    "q_proj": "q", "query": "q", "wq": "q", "q_lin": "q",
    "k_proj": "k", "key": "k", "wk": "k", "k_lin": "k",
    "v_proj": "v", "value": "v", "wv": "v", "v_lin": "v",
    "o_proj": "o", "out_proj": "o", "wo": "o", "out_lin": "o",
    "qkv_proj": "qkv", "c_attn": "qkv", "query_key_value": "qkv", "Wqkv": "qkv", "W_pack": "qkv",
    "gate_proj": "gate", "w1": "gate",
    "up_proj": "up", "w3": "up", "c_fc": "up", "dense_h_to_4h": "up", "fc1": "up", "fc_in": "up",
    "down_proj": "down", "w2": "down", "dense_4h_to_h": "down", "fc2": "down", "fc_out": "down",
    "gate_up_proj": "gate_up",
    "gate": "router", "router": "router",
}
# Leaf names whose role depends on the block they sit in.
ROLE_BY_GROUP: dict[str, dict[str, str]] = {
    "c_proj": {"attention": "o", "mlp": "down"},
    "dense": {"attention": "o", "mlp": "down"},
    "proj": {"attention": "o", "mlp": "down"},
}
ATTENTION_ROLES = ("q", "k", "v", "qkv", "o")
ROLE_ORDER = ("q", "k", "v", "qkv", "o", "router", "gate", "up", "gate_up", "down", "other")


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


@dataclass(frozen=True)
class Dimensions:
    """The widths a config declares, under their common names."""

    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_experts: int


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return None


def dimensions(config: Any) -> Dimensions:
    """Hidden size, heads, kv heads, head_dim, intermediate size, experts, read from a config."""
    hidden = int(_first(config, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(config, "num_attention_heads", "n_head"))
    if getattr(config, "multi_query", False) and not getattr(config, "new_decoder_architecture", False):
        # Falcon's original layout: multi-query attention shares one k and one v head
        # (its config still carries num_kv_heads = num_attention_heads, unused).
        kv_heads = 1
    else:
        kv_heads = _first(config, "num_key_value_heads", "num_kv_heads", "n_head_kv") or heads
    head_dim = _first(config, "head_dim") or hidden // heads
    intermediate = _first(config, "intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim")
    if intermediate is None:
        intermediate = 4 * hidden
    return Dimensions(
        hidden_size=hidden,
        num_layers=int(_first(config, "num_hidden_layers", "n_layer", "num_layers")),
        num_attention_heads=heads,
        num_key_value_heads=int(kv_heads),
        head_dim=int(head_dim),
        intermediate_size=int(intermediate),
        vocab_size=int(_first(config, "vocab_size") or 0),
        num_experts=int(_first(config, "num_local_experts", "num_experts") or 1),
    )


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
    return shapes.get(role)
