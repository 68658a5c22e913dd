"""`make zoo`: every causal-LM model type of the pinned transformers through reportgen -> benchmarks/ZOO.md.

Each model type's default config (transformers' own) is analysed as a user's
config.json would be: built on the meta device, every default cell counted by
the closed form and by PEFT, and merge_and_unload verified on real tensors on CPU
within one memory budget for the whole run (``--merge-budget``, GiB), all models at
once on every core.
The totals head the file and rewrite the README's "tested on" line, so neither
is typed by hand; a transformers upgrade shows up as a diff of both.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import re
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import psutil

from reportgen.data import MISMATCH, NO_MATCH, NOT_APPLICABLE, OK, ModelReport, RunResult
from reportgen.zoo import BUILD_FAILURE, ZooEntry, is_build_failure, sweep

ROOT = Path(__file__).resolve().parent.parent
ZOO_MD = ROOT / "benchmarks" / "ZOO.md"
README = ROOT / "README.md"
README_LINE = re.compile(r"(<!-- zoo -->).*?(<!-- /zoo -->)", re.DOTALL)


def _reason_kind(note: str) -> str:
    """A not-applicable note without its model-specific names and numbers, to count cells by kind of reason."""
    text = re.sub(r"\(model_type='[^']*'\)", "", note)
    text = re.sub(r"'[^']*'|\{[^}]*\}|\[[^\]]*\]|\d[\d,]*", "…", text)
    return text[:150]


class PeakMemory:
    """The largest resident memory of this process and its workers together, sampled while the sweep runs."""

    def __init__(self, every: float = 0.2) -> None:
        self.peak, self.every = 0, every
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self.done.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass  # a worker that just ended
            self.peak = max(self.peak, total)
            self.done.wait(self.every)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def merge_lines(reports: dict[str, ModelReport], budget: float | None, peak: int) -> list[str]:
    """The merge checks' totals, for the head of ZOO.md."""
    if budget is None:
        return ["- merge checks: not run (--merge-budget 0)"]
    status = collections.Counter(report.merge_check.status_label for report in reports.values())
    took = sum(report.merge_check.seconds or 0.0 for report in reports.values())
    counts = ", ".join(f"**{n}** {label}" for label, n in status.most_common())
    return [f"- merge checks (`--merge-budget {budget:g}` GiB for the whole run, CPU, fp32): {counts}; "
            f"{took:.0f} s of checking in all; peak resident memory of the sweep {peak / 2**30:.1f} GiB"]


def merge_cell(report: ModelReport) -> tuple[str, str]:
    """The merge check's status and seconds, for one row."""
    check = report.merge_check
    label = check.status_label if check.status in ("passed", "not_applicable", "skipped") else f"**{check.status_label}**"
    return label, f"{check.seconds:.1f}" if check.seconds is not None else ""


def markdown(entries: list[ZooEntry], result: RunResult, seconds: dict[str, float], wall: float, jobs: int,
             budget: float | None = None, peak: int = 0) -> str:
    """ZOO.md: the totals, one row per model type, the reasons cells do not apply, what transformers cannot build."""
    reports = {Path(report.model.id).parent.name: report for report in result.reports}
    failures = {Path(failure.id).parent.name: failure for failure in result.failures}
    built_failures = [t for t, f in failures.items() if is_build_failure(f)]
    ours = [t for t, f in failures.items() if not is_build_failure(f)]
    with_config = [entry for entry in entries if entry.path]
    cells = [cell for report in reports.values() for cell in report.cells]
    status = collections.Counter(cell.status for cell in cells)
    mismatched = [t for t, report in reports.items() if report.mismatches]
    lines = [
        f"# The zoo: every causal-LM model type of transformers {version('transformers')}",
        "",
        "Written by `make zoo` (`benchmarks/zoo.py`), never by hand: each model type of transformers'",
        "`MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`, from its own default config (`AutoConfig.for_model`), through",
        "`reportgen report --device cpu --merge-budget 4` with every default cell counted by the closed form and by",
        "PEFT, and the merge check (walk-through targets, then all-linear on a replica with every kind of layer).",
        "",
        f"- **{len(entries)}** model types; **{len(with_config)}** have a default config transformers can create",
        f"- **{len(reports)} analysed**, {len(reports) - len(mismatched)} with every counted cell equal to PEFT's "
        f"count, **{len(mismatched)}** with a cell where they differ",
        f"- cells: **{status[OK]}** counted by both (formula == PEFT), **{status[MISMATCH]}** differ, "
        f"**{status[NOT_APPLICABLE]}** not applicable (with the reason), **{status[NO_MATCH]}** match no module",
        f"- **{len(built_failures)}** transformers cannot build from its default config (listed below, in its words)",
        f"- **{len(ours)}** failed in reportgen",
        *merge_lines(reports, budget, peak),
        f"- the whole sweep: {wall:.0f} s with {jobs} processes on {os.cpu_count()} cores "
        f"(Python {platform.python_version()}, torch {version('torch')}, peft {version('peft')})",
        "",
        "## Every model type",
        "",
        "| model type | class | status | module groups | parts | counted | n/a | no match | merge check | merge s "
        "| seconds |",
        "|---|---|---|---:|---|---:|---:|---:|---|---:|---:|",
    ]
    for entry in entries:
        name, took = entry.model_type, seconds.get(entry.model_type)
        time_cell = f"{took:.1f}" if took is not None else ""
        if entry.path is None:
            lines.append(f"| {name} | {entry.architecture} | no default config | | | | | | | | |")
        elif name in failures:
            kind = "transformers cannot build" if name in built_failures else "**failed in reportgen**"
            lines.append(f"| {name} | {entry.architecture} | {kind} | | | | | | | | {time_cell} |")
        else:
            report = reports[name]
            count = collections.Counter(cell.status for cell in report.cells)
            parts = ", ".join(dict.fromkeys(row.part for row in report.modules))
            state = "**MISMATCH**" if report.mismatches else "ok"
            lines.append(f"| {name} | {report.model.architecture} | {state} | {len(report.modules)} | {parts} | "
                         f"{count[OK]} | {count[NOT_APPLICABLE]} | {count[NO_MATCH]} | "
                         f"{' | '.join(merge_cell(report))} | {time_cell} |")
    kinds: dict[str, set[str]] = collections.defaultdict(set)
    kind_cells: collections.Counter[str] = collections.Counter()
    for name, report in reports.items():
        for cell in report.cells:
            if cell.status == NOT_APPLICABLE:
                kinds[_reason_kind(cell.note)].add(name)
                kind_cells[_reason_kind(cell.note)] += 1
    lines += ["", "## Why cells do not apply (names and numbers folded to …)", "",
              "| reason | cells | model types |", "|---|---:|---|"]
    for kind, count in kind_cells.most_common():
        lines.append(f"| {_escape(kind)} | {count} | {', '.join(sorted(kinds[kind]))} |")
    if budget is not None:
        lines += ["", "## Merge checks that did not pass, in their own words", "",
                  "| model type | merge check | what was materialised | note |", "|---|---|---|---|"]
        for name, report in reports.items():
            check = report.merge_check
            if check.status != "passed":
                lines.append(f"| {name} | {check.status_label} | {_escape(check.materialised)} | {_escape(check.note)} |")
        lines += ["", "## What each merge check materialised", "", "| model type | walk-through pass | all-linear pass |",
                  "|---|---|---|"]
        for name, report in reports.items():
            second = report.merge_check.all_linear
            lines.append(f"| {name} | {_escape(report.merge_check.materialised)} | "
                         f"{_escape(second.materialised) if second else 'the same (all-linear)'} |")
    lines += ["", "## What transformers cannot build from its default config", "",
              "| model type | transformers' message |", "|---|---|"]
    for name in built_failures:
        message = failures[name].error.split(f"{BUILD_FAILURE} ", 1)[-1]
        lines.append(f"| {name} | {_escape(message)} |")
    for entry in entries:
        if entry.path is None:
            lines.append(f"| {entry.model_type} | no default config: {_escape(entry.error)} |")
    if ours:
        lines += ["", "## Failed in reportgen", "", "| model type | error |", "|---|---|"]
        lines += [f"| {name} | {_escape(failures[name].error)} |" for name in ours]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def readme_line(entries: list[ZooEntry], result: RunResult) -> str:
    """The README's sentence, from the same totals."""
    with_config = sum(1 for entry in entries if entry.path)
    clean = sum(1 for report in result.reports if not report.mismatches)
    built = sum(1 for failure in result.failures if is_build_failure(failure))
    return (f"<!-- zoo -->Tested on {clean} of the {len(entries)} causal-LM model types of transformers "
            f"{version('transformers')} (every one with a default config that transformers can build: "
            f"{with_config - built} of {with_config}), each cell counted by the closed form and by PEFT alike "
            f"or marked not applicable with the reason (`make zoo`, `benchmarks/ZOO.md`).<!-- /zoo -->")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=0, help="processes; 0: one per core, as reportgen's --jobs 0 "
                                                            "(default: 0)")
    parser.add_argument("--out", type=Path, default=ZOO_MD, help="where to write ZOO.md")
    parser.add_argument("--merge-budget", type=float, default=4.0, metavar="GIB",
                        help="memory the merge checks of the whole run may use, in GiB (2^30 bytes); 0: no merge "
                             "check (default: 4)")
    parser.add_argument("model_types", nargs="*", help="only these model types (default: all)")
    args = parser.parse_args()
    args.jobs = args.jobs or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="reportgen-zoo-") as folder:
        budget = args.merge_budget or None
        start = time.perf_counter()
        with PeakMemory() as peak:
            entries, result, seconds = sweep(Path(folder), args.jobs, args.model_types or None, budget)
        wall = time.perf_counter() - start
    args.out.write_text(markdown(entries, result, seconds, wall, args.jobs, budget, peak.peak), encoding="utf-8")
    if not args.model_types:
        text = README.read_text(encoding="utf-8")
        README.write_text(README_LINE.sub(lambda _: readme_line(entries, result), text), encoding="utf-8")
    ours = [f for f in result.failures if not is_build_failure(f)]
    mismatched = [r.model.model_type for r in result.reports if r.mismatches]
    unmerged = [r.model.model_type for r in result.reports if r.merge_check.status in ("failed", "error")]
    print(f"wrote {args.out}: {len(result.reports)} analysed, {len(mismatched)} with a mismatch, "
          f"{len(ours)} failed in reportgen, {len(unmerged)} merge checks failed or errored, {wall:.0f} s, "
          f"peak {peak.peak / 2**30:.1f} GiB")
    return 1 if ours or mismatched or (budget is not None and unmerged) else 0


if __name__ == "__main__":
    sys.exit(main())
