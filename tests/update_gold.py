"""Refresh the golden files in tests/gold/ (run: `make update-gold`, or `python -m tests.update_gold`).

The gold site is the real pipeline on the walk-through's model (bundled
meta-llama/Llama-3.2-1B-Instruct, ranks 8 and 16, merge check skipped) plus
one line that fails, with the library versions replaced by a placeholder so
the files do not depend on the machine's Python patch release. Read the diff
before committing: tests/test_render.py also asserts the key numbers on their
own, so a careless refresh cannot hide a regression.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import tempfile
from pathlib import Path

from reportgen.data import Environment, RunResult
from reportgen.pipeline import Study, run
from reportgen.render.site import write_site
from reportgen.resolve import ModelSpec

GOLD = Path(__file__).parent / "gold"
GOLD_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
GOLD_SLUG = "meta-llama--Llama-3.2-1B-Instruct"
GOLD_ENVIRONMENT = Environment(python="(any)", torch="(pinned)", transformers="(pinned)", peft="(pinned)")
# Golden file name -> path inside the written site.
GOLD_FILES = {
    "report.html": f"{GOLD_SLUG}/report.html",
    "report.md": f"{GOLD_SLUG}/report.md",
    "index.html": "index.html",
    "index.md": "index.md",
    "summary.md": "summary.md",
}


@functools.lru_cache(maxsize=1)
def gold_result() -> RunResult:
    """The gold run: the walk-through's model and one failing line, machine versions replaced."""
    specs = [
        ModelSpec(text=GOLD_MODEL, origin="models.txt:1"),
        ModelSpec(text="./no-such-model/config.json", origin="models.txt:2"),
    ]
    result = run(specs, Study(ranks=(8, 16), merge_check=False))
    reports = tuple(dataclasses.replace(report, environment=GOLD_ENVIRONMENT) for report in result.reports)
    return dataclasses.replace(result, reports=reports, environment=GOLD_ENVIRONMENT)


def render_gold(out: Path) -> dict[str, str]:
    """Write the gold site under out; returns each golden file's text by its gold name."""
    write_site(gold_result(), out)
    return {name: (out / relative).read_text(encoding="utf-8") for name, relative in GOLD_FILES.items()}


def main() -> None:
    """Rewrite tests/gold/ from the current code."""
    with tempfile.TemporaryDirectory() as folder:
        texts = render_gold(Path(folder))
    GOLD.mkdir(exist_ok=True)
    for name, text in texts.items():
        (GOLD / name).write_text(text, encoding="utf-8")
        print(f"wrote {GOLD / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
