"""The merge check's budget is the whole run's, and the pipeline hands PEFT the reference's names as PEFT takes them."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from reportgen import budget, merge, pipeline
from reportgen.data import MergeCheck, MergeStatus
from reportgen.methods import Plan

MIB = 1024**2


def _hold(amount: int, inside: Any, releasing: Any) -> None:
    with budget.reserve(amount):
        inside.set()
        time.sleep(0.5)
        releasing.value = time.monotonic()  # the last moment this process holds its share


def test_a_worker_waits_until_the_memory_it_needs_is_free() -> None:
    budget.share(100 * MIB)
    try:
        context = multiprocessing.get_context("fork")
        inside, releasing = context.Event(), context.Value("d", 0.0)
        first = context.Process(target=_hold, args=(80 * MIB, inside, releasing))
        first.start()
        assert inside.wait(30)
        with budget.reserve(80 * MIB):  # 80 + 80 > 100: this one must wait for the first to give its share back
            reserved = time.monotonic()
        first.join(30)
        assert releasing.value > 0 and reserved >= releasing.value
        with budget.reserve(20 * MIB), budget.reserve(80 * MIB):  # 20 + 80 fit together: no wait
            pass
    finally:
        budget.unshare()


def test_the_reference_target_parameters_reach_peft_as_target_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_check(config: object, targets: tuple[str, ...], *args: object, **kwargs: Any) -> tuple[MergeCheck, str]:
        calls.append({"targets": tuple(targets), "parameters": tuple(kwargs.get("parameters", ())),
                      "replica": kwargs.get("replica", False)})
        return MergeCheck(MergeStatus.PASSED, passed=True, note="ok"), ""

    monkeypatch.setattr(merge, "check_merge", fake_check)
    reference = Plan(rows=(), all_linear=False, modules=("q_proj", "o_proj"), parameters=("mlp.experts.gate_up_proj",))
    check, _ = pipeline._merge_check(object(), reference, pipeline.Study(merge_budget=1.0, device="cpu"))
    assert calls == [
        {"targets": ("q_proj", "o_proj"), "parameters": ("mlp.experts.gate_up_proj",), "replica": False},
        {"targets": ("all-linear",), "parameters": (), "replica": True},
    ]
    assert check.status == "passed" and check.all_linear is not None


def test_peft_refusing_the_all_linear_pass_makes_the_check_not_applicable_never_passed() -> None:
    first = MergeCheck(MergeStatus.PASSED, passed=True, note="q/k/v/o merged right")
    second = MergeCheck(MergeStatus.NOT_APPLICABLE, note="not applicable: PEFT cannot merge this adapter: ...")
    combined = merge.combined_with_all_linear(first, second)
    assert combined.status == "not_applicable" and combined.passed is None
    assert "PEFT cannot merge this adapter" in combined.note
    failed = merge.combined_with_all_linear(first, MergeCheck(MergeStatus.FAILED, passed=False, note="x"))
    assert failed.status == "failed" and failed.passed is False
