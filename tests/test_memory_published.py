"""The estimate against published GPU runs (issue 16): each run's settings through reportgen's own options.

The measured peaks are the sources' (reportgen/memory_checks/published_runs.toml, copied from
../shared/memory-measurements.md); a run is reported, never tuned to. A run outside the band carries the
reason in the data and benchmarks/MEMORY.md, and is an expected failure here (strict: if it ever falls inside
the band, the test says so and the note must go).
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path

import pytest

from reportgen.memory_validation import (
    PublishedRun, PublishedRuns, RunCheck, estimate_run, load_runs, parse_options, run_options, summarise, within,
)
from reportgen.memory_measure import CASES
from tests.test_memory_measure import measured

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = load_runs()


@functools.lru_cache(maxsize=None)
def checked(run: PublishedRun) -> RunCheck:
    return estimate_run(run, PUBLISHED.sources[run.source])


def _param(run: PublishedRun) -> object:
    marks = [pytest.mark.xfail(strict=True, reason="outside the band, reason in MEMORY.md")] if run.note else []
    return pytest.param(run, marks=marks, id=f"{run.model}-{run.method}-b{run.batch_size}")


@pytest.mark.parametrize("run", [_param(run) for run in PUBLISHED.runs if not run.not_reproducible])
def test_reproducible_runs_are_within_the_band(run: PublishedRun) -> None:
    check = checked(run)
    assert within(check.ratio, PUBLISHED.band_percent), (run.model, run.method, round(check.ratio, 3))


def test_runs_outside_the_band_say_why_and_few_are_not_reproducible() -> None:
    for run in PUBLISHED.runs:
        ratio = checked(run).ratio
        if not run.not_reproducible and not within(ratio, PUBLISHED.band_percent):
            assert run.note, f"{run.model} {run.method} is outside the band ({ratio:.3f}) with no reason"
    excluded = [run for run in PUBLISHED.runs if run.not_reproducible]
    assert len(excluded) <= 3 and all(len(run.not_reproducible) > 40 for run in excluded)


def test_every_run_comes_from_the_shared_facts() -> None:
    # The runs are the source's table: 11 runs, peaks in GB as published (litgpt README, A10G).
    assert len(PUBLISHED.runs) == 11
    assert {(run.model, run.method, run.batch_size, run.peak_gb) for run in PUBLISHED.runs} >= {
        ("meta-llama/Llama-2-7b-hf", "lora", 2, 19.77), ("meta-llama/Llama-2-7b-hf", "qlora", 2, 13.68),
        ("tiiuae/falcon-7b", "lora", 1, 16.69), ("mistralai/Mistral-7B-v0.1", "qlora", 2, 14.29)}
    assert all(PUBLISHED.sources[run.source].title for run in PUBLISHED.runs)


def test_settings_go_through_reportgens_own_options() -> None:
    run = next(run for run in PUBLISHED.runs if (run.model, run.method) == ("meta-llama/Llama-2-7b-hf", "qlora"))
    assumptions, ranks, scenarios = parse_options(run_options(run, PUBLISHED.sources[run.source]))
    assert (assumptions.seq_len, assumptions.batch_size, assumptions.grad_checkpointing) == (512, 2, False)
    assert (assumptions.attention, assumptions.adapter_dtype, assumptions.optimizer) == ("sdpa", "base", "paged-adamw")
    assert ranks == (32,) and scenarios[0].targets == ("q_proj", "v_proj")
    # litgpt's bnb.nf4 (Lightning's BitsandbytesPrecision "nf4": compress_statistics=False) under bitsandbytes 0.42.
    assert (assumptions.double_quant, assumptions.bnb_keeps_inputs) == (False, True)


def test_llama2_7b_lora_weights_by_hand() -> None:
    run = next(run for run in PUBLISHED.runs if (run.model, run.method) == ("meta-llama/Llama-2-7b-hf", "lora"))
    row = checked(run).row
    # Llama-2-7b: embeddings and head 32000 x 4096 each, 32 layers of q/k/v/o 4096x4096 and gate/up/down
    # 4096x11008, 65 norms of 4096: 6,738,415,616 parameters, bf16.
    params = 2 * 32_000 * 4096 + 32 * (4 * 4096 * 4096 + 3 * 4096 * 11_008) + 65 * 4096
    assert params == 6_738_415_616
    # LoRA r=32 on q and v: 32 layers * 2 matrices * 32 * (4096 + 4096), in bf16 (litgpt's bf16-true).
    adapters = 32 * 2 * 32 * (4096 + 4096)
    assert row.weight_bytes == 2 * params + 2 * adapters
    assert row.optimizer_bytes == 4 * adapters  # torch AdamW: m and v like the bf16 parameters


def test_memory_md_and_the_summary_are_current() -> None:
    text = (ROOT / "benchmarks" / "MEMORY.md").read_text(encoding="utf-8")
    for run in PUBLISHED.runs:
        check = checked(run)
        line = next(line for line in text.splitlines() if f"`{check.command}`" in line)
        assert f"| {check.estimated_bytes / 1e9:.2f} | {run.peak_gb:.2f} |" in line
        if run.not_reproducible:
            assert "not reproducible" in line
    summary = summarise(tuple(measured(case) for case in CASES), tuple(checked(run) for run in PUBLISHED.runs),
                        PUBLISHED.band_percent)
    shipped = json.loads((resources.files("reportgen") / "memory_checks" / "summary.json").read_text())
    assert shipped["published"] == [vars(check) for check in summary.published]
    assert shipped["cpu_cases"] == summary.cpu_cases
    assert abs(shipped["cpu_worst_percent"] - summary.cpu_worst_percent) <= 0.5  # CPU kernels may round
