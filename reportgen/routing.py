"""Fixed routing for the merge check: a router's choice cannot flip between the adapted and the merged pass.

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
