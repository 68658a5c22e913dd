"""The memory section's context: the fit marks' GPU sizes and headroom, and the validation's summary.

The summary is written by ``make validate-memory`` (reportgen.memory_validation) into the package, so a
report quotes the figures that validation computed, never typed ones. No torch here.
"""

from __future__ import annotations

import json
from importlib import resources

from .data import MemoryAssumptions, MemoryContext, MemoryValidation
from .memory_data import PublishedCheck

SUMMARY_FILE = "summary.json"


def read_validation() -> MemoryValidation | None:
    """The last `make validate-memory` summary shipped with the package (None when there is none)."""
    path = resources.files("reportgen") / "memory_checks" / SUMMARY_FILE
    if not path.is_file():
        return None
    fields = json.loads(path.read_text(encoding="utf-8"))
    fields["published"] = tuple(PublishedCheck(**check) for check in fields["published"])
    return MemoryValidation(**fields)


def memory_context(assumptions: MemoryAssumptions) -> MemoryContext:
    """What the memory section shows beside the rows, for one run's assumptions."""
    return MemoryContext(assumptions.gpu_sizes_gib, assumptions.headroom_gib, read_validation(),
                         assumptions.grad_checkpointing, assumptions.attention)
