"""--jobs spreads models over processes and changes nothing in the result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reportgen.data import ModelFailure, ModelReport, to_jsonable
from reportgen.pipeline import Progress, Study, run
from reportgen.resolve import ModelSpec

if TYPE_CHECKING:
    from tests.conftest import Cli


def test_parallel_run_equals_the_serial_run(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    specs = [
        ModelSpec(str(write_config("one")), "models.txt:1"),
        ModelSpec(str(tmp_path / "missing.json"), "models.txt:2"),
        ModelSpec("openai-community/gpt2", "models.txt:3"),
    ]
    study = Study(ranks=(4,), merge_check=False)
    ended: list[tuple[str, bool]] = []
    progress = Progress(on_model_end=lambda model, ok, seconds: ended.append((model, ok)))
    serial = run(specs, study)
    parallel = run(specs, study, progress=progress, jobs=2)
    assert to_jsonable(parallel) == to_jsonable(serial)
    assert [r.model.id for r in parallel.reports] == [specs[0].text, "openai-community/gpt2"]
    assert [f.line for f in parallel.failures] == [2]
    assert isinstance(parallel.reports[0], ModelReport) and isinstance(parallel.failures[0], ModelFailure)
    # Every model is reported to the progress display, in models-file order.
    assert ended == [(specs[0].text, True), (specs[1].text, False), (specs[2].text, True)]
    # GPT-2 c_attn at r=4: 12 layers x 4 x (768 + 2304), the same in both runs.
    assert parallel.reports[1].cell("c_attn", 4).peft_trainable == 12 * 4 * (768 + 2304)


def test_jobs_zero_means_one_per_core_through_the_cli(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    result = run_cli.report(tmp_path, [write_config("a"), write_config("b")], "--jobs", "0", "--ranks", "4",
                            "--no-merge-check", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*/report.json"))) == 2


def test_parallel_jobs_share_the_merge_budget(write_config: Callable[..., Path]) -> None:
    # The check reserves 0.5 GiB for the runtime beside the (tiny) weights, so 0.8 GiB holds one model's
    # check, not two at once. The budget is the whole run's: with two jobs, the second check waits for the
    # first to give its share back (tests/test_merge_budget.py), and both models are still checked whole.
    specs = [ModelSpec(str(write_config("a")), "m:1"), ModelSpec(str(write_config("b")), "m:2")]
    alone = run(specs, Study(ranks=(4,), merge_budget=0.8), jobs=1)
    assert [r.merge_check.status for r in alone.reports] == ["passed", "passed"]
    shared = run(specs, Study(ranks=(4,), merge_budget=0.8), jobs=2)
    assert [r.merge_check.status for r in shared.reports] == ["passed", "passed"]
    assert all(r.merge_check.materialised.startswith("whole model") for r in shared.reports)
    assert all("budget 0.8 GiB" in (r.merge_check.all_linear.materialised if r.merge_check.all_linear else "")
               for r in shared.reports)


def test_a_single_model_spreads_its_cells_over_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import os

    from reportgen import peft_count

    specs = [ModelSpec("openai-community/gpt2", "models.txt:1")]
    study = Study(ranks=(4, 8), merge_check=False)
    serial = run(specs, study)
    counted: list[int] = []
    parallel = run(specs, study, progress=Progress(on_cell=lambda: counted.append(1)), jobs=2)
    assert to_jsonable(parallel) == to_jsonable(serial)
    assert len(counted) == len(parallel.reports[0].cells)  # the progress bar still moves cell by cell
    # GPT-2 c_attn: 12 layers x r x (768 + 2304), by hand.
    assert [parallel.reports[0].cell("c_attn", r).peft_trainable for r in (4, 8)] == [12 * r * 3072 for r in (4, 8)]

    # The counts really come from other processes, and in the cells' own order.
    real = peft_count.count_cell
    monkeypatch.setattr(peft_count, "count_cell", lambda *job: dataclasses.replace(real(*job), note=str(os.getpid())))
    report = run(specs, study, jobs=2).reports[0]
    assert os.getpid() not in {int(cell.note) for cell in report.cells}
    assert [(c.scenario, c.rank, c.peft_trainable) for c in report.cells] == [
        (c.scenario, c.rank, c.peft_trainable) for c in serial.reports[0].cells]


def test_inspect_takes_jobs(run_cli: Cli) -> None:
    one, two = (run_cli("inspect", "openai-community/gpt2", "--ranks", "4", "--jobs", jobs) for jobs in ("1", "2"))
    assert one.exit_code == two.exit_code == 0, two.output
    assert one.output == two.output
    assert f"{12 * 4 * 3072:,}" in two.output  # c_attn at r=4, by hand
