"""The renderers, the study-matrix parser and the method-variant parser import neither torch, transformers nor PEFT.

Rendering a report, reading a --matrix file and parsing --methods must stay cheap (and usable where torch
is not installed). Each module is imported alone in a fresh interpreter, which then lists what it loaded:
a transitive import through any other module counts too, as it would for a user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft")
RENDERERS = ("jsonreport", "markdown", "html", "site", "charts", "view", "terminal", "compare", "diagram", "jinja")
TORCH_FREE = ["reportgen.render", *(f"reportgen.render.{name}" for name in RENDERERS),
              "reportgen.matrix", "reportgen.variants",
              "reportgen.cache", "reportgen.codec", "reportgen.quiet", "reportgen.reuse"]  # the cached path


def heavy_modules_after_importing(module: str) -> list[str]:
    """Which of torch, transformers and peft a fresh interpreter holds after importing module alone."""
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize("module", TORCH_FREE)
def test_imports_no_torch(module: str) -> None:
    assert heavy_modules_after_importing(module) == []


def test_the_probe_sees_an_import_of_torch() -> None:
    """The control: a module that does import torch is caught, so the tests above can fail."""
    assert heavy_modules_after_importing("reportgen.merge") == list(HEAVY)
