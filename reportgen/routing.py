"""The merge check's forward passes, with fixed routing: a router's choice cannot flip between them.

In a mixture of experts, the adapted and the merged model compute the same router
logits up to rounding; where two experts score within a rounding error of each
other, top-k may pick differently and move that token's logits by far more than
any tolerance, for a reason that has nothing to do with the merge. So the check
records every router's output in the adapted pass and replays it in the merged
pass. The router's own merge is still verified: its merged output is compared
with the recorded one (relative to the router output's own scale) before it is
replaced.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from peft import PeftModel
from peft.tuners.lora.layer import ParamWrapper
from torch import nn

ROUTER_NAMES = ("gate", "router")  # the last part of a router's module name in transformers' MoE blocks


def router_paths(model: nn.Module) -> list[str]:
    """The outermost modules named like a router (mlp.gate, feed_forward.router, ...)."""
    found: list[str] = []
    for name, _ in model.named_modules():
        if name.rpartition(".")[2] in ROUTER_NAMES and not any(name.startswith(f"{outer}.") for outer in found):
            found.append(name)
    return found


def _tensors(value: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a module's output (a tensor or a tuple of them), in order."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    return [item for item in items if isinstance(item, torch.Tensor) and item.is_floating_point()]


class Routing:
    """Records the routers' outputs in one pass and replays them in another."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.recorded: dict[str, list[Any]] = {}
        self.relative_diff = 0.0  # the largest |merged - adapted| router output, relative to its scale

    @contextlib.contextmanager
    def record(self, model: nn.Module) -> Iterator[None]:
        """Note every router's output while the block runs (each call, in order)."""
        self.recorded = {path: [] for path in self.paths}

        def hook(path: str) -> Any:
            def note(module: nn.Module, args: Any, output: Any) -> None:
                self.recorded[path].append(output)
            return note

        with _hooks(model, self.paths, hook):
            yield

    @contextlib.contextmanager
    def replay(self, model: nn.Module) -> Iterator[None]:
        """Hand back the recorded outputs while the block runs, after comparing each with the router's own."""
        calls = {path: 0 for path in self.paths}

        def hook(path: str) -> Any:
            def swap(module: nn.Module, args: Any, output: Any) -> Any:
                outputs = self.recorded.get(path, [])
                if calls[path] >= len(outputs):
                    return output  # more calls than recorded: leave this one alone
                recorded = outputs[calls[path]]
                calls[path] += 1
                for mine, theirs in zip(_tensors(output), _tensors(recorded)):
                    if mine.shape == theirs.shape and mine.dim() > 0:
                        # The batch is doubled and the adapted copy is its second half (the first may be
                        # the base model's, in a mixed batch): compare that half.
                        mine, theirs = mine[len(mine) // 2:], theirs[len(theirs) // 2:]
                        scale = max(theirs.abs().max().item(), 1e-30)
                        self.relative_diff = max(self.relative_diff, (mine - theirs).abs().max().item() / scale)
                return recorded
            return swap

        with _hooks(model, self.paths, hook):
            yield


@contextlib.contextmanager
def _hooks(model: nn.Module, paths: list[str], make: Any) -> Iterator[None]:
    handles = []
    for path in paths:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            continue
        handles.append(module.register_forward_hook(make(path)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def logits(model: nn.Module, ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """The model's logits for the batch, in fp32."""
    out: torch.Tensor = model(input_ids=ids, use_cache=False, **kwargs).logits.float()
    return out


def base_and_adapted_logits(
    peft_model: PeftModel, ids: torch.Tensor, routing: Routing | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The base model's and the adapted model's logits for the batch, from one forward pass.

    PEFT's mixed-batch forward runs the batch twice over, the first copy through
    the base layers alone ("__base__") and the second with the adapter. On CPU a
    pass over a large model is bound by reading its weights, so one pass for
    both costs about half as much as two. ``routing`` records the routers' outputs
    of the adapted pass.
    """
    if (routing and routing.paths) or any(isinstance(module, ParamWrapper) for module in peft_model.modules()):
        # PEFT runs no mixed batch through a wrapped parameter (experts, a router) nor through a MoE block
        # that flattens the tokens: the base pass runs on its own.
        return two_pass_logits(peft_model, ids, routing)
    both = torch.cat([ids, ids])
    names = ["__base__"] * len(ids) + ["default"] * len(ids)
    try:
        with _recording(routing, peft_model):
            out = logits(peft_model, both, adapter_names=names)
    except (ValueError, TypeError) as exc:
        if "adapter" not in str(exc):
            raise
        _drop_adapter_name_hooks(peft_model)
        return two_pass_logits(peft_model, ids, routing)
    return out[: len(ids)], out[len(ids):]


def _drop_adapter_name_hooks(peft_model: PeftModel) -> None:
    """PEFT 0.21 leaves its mixed-batch hooks on the layers when the forward raises (its context manager
    has no finally): removed here, so that the next pass is not a mixed batch."""
    for module in peft_model.modules():
        for key, hook in list(module._forward_pre_hooks.items()):
            if getattr(getattr(hook, "func", None), "__name__", "") == "_adapter_names_pre_forward_hook":
                del module._forward_pre_hooks[key]
                module._forward_pre_hooks_with_kwargs.pop(key, None)


def two_pass_logits(
    peft_model: PeftModel, ids: torch.Tensor, routing: Routing | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The base model's logits with the adapter disabled, then the adapted ones (the same doubled batch)."""
    both = torch.cat([ids, ids])
    with peft_model.disable_adapter():
        before = logits(peft_model, both)[len(ids):]
    with _recording(routing, peft_model):
        return before, logits(peft_model, both)[len(ids):]


def _recording(routing: Routing | None, peft_model: PeftModel) -> contextlib.AbstractContextManager[None]:
    return routing.record(peft_model.get_base_model()) if routing else contextlib.nullcontext()
