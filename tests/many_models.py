"""A study of hundreds of models, made cheaply: a few dozen real analyses of tiny configs, reported under many ids.

A team's catalog holds many checkpoints of each model: the same config under
another path or hub id. So each real report (the tiny families of
tests/families.py at a few widths, and the tiny Gemma-3 with its vision tower)
is reported again under other ids, the way `reportgen report` would report
each checkpoint. Some are given a merge-check outcome or a disagreement the
tiny configs do not produce, so every status of the index is on the page.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import tempfile
from pathlib import Path

from reportgen.data import MISMATCH, MergeCheck, MergeStatus, ModelFailure, ModelReport, RunResult
from reportgen.pipeline import Study, run
from reportgen.resolve import ModelSpec
from tests.families import FAMILIES, tiny_config
from tests.update_gold import GOLD_ENVIRONMENT

WIDTHS = ({"hidden_size": 64}, {"hidden_size": 128, "num_hidden_layers": 3}, {"hidden_size": 32, "num_hidden_layers": 1})
ORGS = ("acme", "globex", "initech", "umbrella")
MERGE_OUTCOMES = (
    MergeCheck(MergeStatus.PASSED, passed=True, max_abs_diff=1e-6, tolerance=1e-4, device="cpu"),
    MergeCheck(MergeStatus.SKIPPED, note="--no-merge-check"),
    MergeCheck(MergeStatus.FAILED, passed=False, max_abs_diff=0.5, tolerance=1e-4, device="cpu"),
    MergeCheck(MergeStatus.ERROR, note="the check could not finish: out of memory"),
    MergeCheck(MergeStatus.NOT_APPLICABLE, note="no adapter to merge"),
    MergeCheck(MergeStatus.PASSED, passed=True, max_abs_diff=2e-6, tolerance=1e-4, device="cpu"),
)
COPIES = 6  # each real report under this many ids: 28 reports x 6 = 168 models
FAILURES = 12


def _configs(folder: Path) -> list[Path]:
    """The tiny configs: every family at a few widths (widths that keep each family buildable)."""
    paths = []
    for family in FAMILIES:
        for index, width in enumerate(WIDTHS):
            if family in ("gpt2", "falcon"):
                width = {"n_embd": width["hidden_size"]} if family == "gpt2" else {"hidden_size": width["hidden_size"]}
            path = folder / "checkpoints" / family / f"width-{index}" / "config.json"
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(tiny_config(family, **width)), encoding="utf-8")
            paths.append(path)
    return paths


def vision_config(folder: Path) -> Path:
    """The tiny Gemma-3 with its vision tower (tests/test_zoo_families.py's), as the zoo writes it."""
    from tests.test_zoo_families import write_tiny

    return write_tiny(folder / "vision", "gemma3")


def _copy(report: ModelReport, copy: int, number: int) -> ModelReport:
    """The report under its copy's id: local checkpoint paths and hub ids, a merge outcome by turns."""
    family = report.model.model_type
    if copy % 2 == 0:
        model_id = f"/data/team/{family}/{Path(report.model.id).parent.name}/checkpoint-{copy * 500}/config.json"
        source = f"local file {model_id}"
    else:
        model_id = f"{ORGS[(copy // 2) % len(ORGS)]}/{family}-{Path(report.model.id).parent.name}-step{copy * 500}"
        source = "config.json from the Hugging Face hub"
    model = dataclasses.replace(report.model, id=model_id, source=source)
    slug = model_id.strip("/").replace("/", "--")
    changed = dataclasses.replace(report, slug=slug, model=model, environment=GOLD_ENVIRONMENT,
                                  merge_check=MERGE_OUTCOMES[number % len(MERGE_OUTCOMES)])
    if number % 17 == 5:  # a disagreement now and then: PEFT counts one more than the formula
        cell = next(cell for cell in changed.cells if cell.applicable)
        cells = tuple(dataclasses.replace(c, status=MISMATCH, peft_trainable=(c.formula_trainable or 0) + 1)
                      if c is cell else c for c in changed.cells)
        changed = dataclasses.replace(changed, cells=cells)
    return changed


@functools.lru_cache(maxsize=1)
def many_models() -> RunResult:
    """168 model reports (one with a vision tower) and 12 failures, ranks 8 and 16."""
    folder = Path(tempfile.mkdtemp(prefix="reportgen-many-"))
    paths = _configs(folder) + [vision_config(folder)]
    specs = [ModelSpec(text=str(path), origin=f"models.txt:{line}") for line, path in enumerate(paths, 1)]
    real = run(specs, Study(ranks=(8, 16), merge_check=False))
    assert not real.failures, real.failures
    reports = [_copy(report, copy, number) for number, (copy, report)
               in enumerate((copy, report) for copy in range(COPIES) for report in real.reports)]
    failures = tuple(
        ModelFailure(id=f"/data/team/broken/run-{index}/config.json", slug=f"broken-{index}", line=1000 + index,
                     error=f"models.txt:{1000 + index}: /data/team/broken/run-{index}/config.json: "
                           "the config has no model_type")
        for index in range(FAILURES)
    )
    return RunResult(reports=tuple(reports), failures=failures, ranks=(8, 16), environment=GOLD_ENVIRONMENT)
