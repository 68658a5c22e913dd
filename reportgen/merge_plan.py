"""What the merge check materialises: the whole model, one replica, one replica per kind of layer, or nothing.

The budget is the memory the check may use (GiB, 2^30 bytes). The whole model
is checked when it fits; else a replica with every kind of layer at full width
and fewer layers, experts and tokens (reportgen.replica); else one such replica
per kind of layer, each on its own; else nothing, with the numbers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from .build import build_meta_model, parameter_count
from .formatting import gib_figure
from .replica import REPLICA_EXPERTS, Stack, kept_parameters, layer_stacks, shrink_config, vocab_size

RUNTIME_BYTES = 512 * 1024**2  # the interpreter, torch, transformers and PEFT themselves (~0.4 GiB RSS)
BATCH = (2, 4)  # (sequences, tokens): 8 token positions; the forward passes cost in proportion

Keep = dict[str, list[int]]  # stack path -> the layer indices kept ({} : every layer)


@dataclass(frozen=True)
class Replica:
    """One model to materialise: which layers of each stack it keeps, in words, and its estimated peak."""

    keep: Keep
    described: str
    needed_bytes: int


@dataclass(frozen=True)
class MergePlan:
    """What will be materialised (kind: whole, replica, per_kind, skipped), and why."""

    kind: str
    config: PretrainedConfig  # the config each replica is built from (fewer experts and tokens unless whole)
    replicas: tuple[Replica, ...]
    cuts: tuple[str, ...]  # what the config lost ("4 of 256 experts", "512 of 129,280 tokens")
    vocab_size: int
    whole_bytes: int
    budget_bytes: int
    smallest_bytes: int = 0  # for a skip: the smallest replica tried

    @property
    def needed_bytes(self) -> int:
        return max((replica.needed_bytes for replica in self.replicas), default=self.smallest_bytes)


def estimate_bytes(params: int, dtype: torch.dtype, vocab_size: int) -> int:
    """Peak memory of the check on a model of ``params`` parameters: weights once, a margin, the logits, the runtime.

    The base weights exist once: PEFT wraps the model in place and merge_and_unload
    adds each delta into its weight in place. The margin (5 %) covers the LoRA
    weights (r=16 on q, k, v, o is under 2 % of any model), one delta at a time and
    the activations of a few tokens.
    """
    weights = params * (torch.finfo(dtype).bits // 8)
    logits = 4 * 2 * BATCH[0] * BATCH[1] * vocab_size * 4  # the doubled batch's logits, a few fp32 copies
    return weights + weights // 20 + logits + RUNTIME_BYTES


def _meta(config: PretrainedConfig, trust_remote_code: bool) -> nn.Module:
    return build_meta_model(copy.deepcopy(config), trust_remote_code)


def plan_materialisation(
    config: PretrainedConfig, dtype: torch.dtype, budget_bytes: int, trust_remote_code: bool = False,
    replica: bool = False,
) -> MergePlan:
    """The whole model if it fits (and ``replica`` is not asked for), else the smallest plan that fits."""
    whole_model = _meta(config, trust_remote_code)
    vocab = vocab_size(config)
    whole = estimate_bytes(parameter_count(whole_model), dtype, vocab)
    if whole <= budget_bytes and not replica:
        layers = max((stack.length for stack in layer_stacks(whole_model)), default=0)
        everything = Replica({}, f"all {layers} layers" if layers else "every module", whole)
        return MergePlan("whole", config, (everything,), (), vocab, whole, budget_bytes)
    smallest = whole
    for experts in REPLICA_EXPERTS:
        shrunk = shrink_config(config, experts)
        meta = _meta(shrunk.config, trust_remote_code)
        stacks = layer_stacks(meta)

        def replica_of(keep: Keep) -> Replica:
            params = kept_parameters(meta, stacks, keep)
            return Replica(keep, _layers(stacks, keep), estimate_bytes(params, dtype, shrunk.vocab_size))

        together = replica_of({stack.path: stack.kept() for stack in stacks})
        if together.needed_bytes <= budget_bytes:
            return MergePlan("replica", shrunk.config, (together,), shrunk.cuts, shrunk.vocab_size, whole, budget_bytes)
        kinds = max((len(stack.kinds) for stack in stacks), default=1)
        apart = tuple(replica_of({stack.path: stack.kept(kind) for stack in stacks}) for kind in range(kinds))
        if max(r.needed_bytes for r in apart) <= budget_bytes:
            return MergePlan("per_kind", shrunk.config, apart, shrunk.cuts, shrunk.vocab_size, whole, budget_bytes)
        smallest = min(smallest, max(r.needed_bytes for r in apart))
        if not any("experts" in cut for cut in shrunk.cuts):
            break  # no router to cut further
    return MergePlan("skipped", config, (), (), 0, whole, budget_bytes, smallest)


def _layers(stacks: list[Stack], keep: Keep) -> str:
    """'model.layers: 2 of 61 layers (1 dense, 1 MoE)' for every stack."""
    return "; ".join(stack.describe(keep[stack.path]) for stack in stacks) or "no stack of layers found"


def describe(plan: MergePlan, replica: Replica, targets: str, dtype_name: str) -> str:
    """What one materialised model was, in words, with its numbers."""
    weights = f"random weights (seeded pattern), {dtype_name}"
    if plan.kind == "whole":
        return f"whole model: {replica.described}, {weights}, ~{gib_figure(replica.needed_bytes)} GiB; {targets}"
    what = "replica" if plan.kind == "replica" else "replica of one kind of layer"
    cuts = "; ".join(plan.cuts)
    return (
        f"{what}: {replica.described}{'; ' + cuts if cuts else ''}; widths unchanged; {weights}, "
        f"~{gib_figure(replica.needed_bytes)} GiB (the whole model needs ~{gib_figure(plan.whole_bytes)} GiB, "
        f"budget {gib_figure(plan.budget_bytes)} GiB); {targets}"
    )


def sizes(plan: MergePlan, dtype_name: str) -> str:
    """The numbers behind a skip."""
    return (
        f"the whole model needs ~{gib_figure(plan.whole_bytes)} GiB and a replica of a single layer of each kind "
        f"with two experts ~{gib_figure(plan.smallest_bytes)} GiB in {dtype_name}, the budget is "
        f"{gib_figure(plan.budget_bytes)} GiB (--merge-budget)"
    )
