"""The merge budget shared by the processes of one run: a model's check waits until its memory is free.

Made before the worker processes are forked (``share``), so every worker holds
the same counter; a worker reserves what its check's plan needs and gives it
back when the check ends. A reservation never exceeds the whole budget (the plan
is made against it), so a waiting worker always gets its turn.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from typing import Any

_SHARED: tuple[Any, Any] | None = None  # (free bytes, condition), inherited by forked workers


def share(total_bytes: int) -> None:
    """Make the run's budget shared: call before forking the workers."""
    global _SHARED
    context = multiprocessing.get_context("fork")
    _SHARED = (context.Value("q", total_bytes, lock=False), context.Condition())


def unshare() -> None:
    """Back to an unshared budget (the run is over)."""
    global _SHARED
    _SHARED = None


@contextlib.contextmanager
def reserve(needed_bytes: int) -> Iterator[None]:
    """Hold ``needed_bytes`` of the shared budget for the block, waiting until they are free (no-op unshared)."""
    if _SHARED is None:
        yield
        return
    free, condition = _SHARED
    with condition:
        condition.wait_for(lambda: free.value >= needed_bytes)
        free.value -= needed_bytes
    try:
        yield
    finally:
        with condition:
            free.value += needed_bytes
            condition.notify_all()
