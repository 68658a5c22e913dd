"""The pipeline: resolve -> build -> analyse -> count -> estimate -> (merge) for each model, failures kept apart."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from .data import (
    Environment, MemoryAssumptions, MergeCheck, MergeStatus, ModelFailure, ModelReport, Printouts, RunResult, Scenario,
)
from .errors import ReportgenError, one_line
from .matrix import DEFAULT_RANKS
from .methods import Plan
from .output import unique_slugs
from .resolve import ModelSpec, resolve
from .variants import ALL_LINEAR, DEFAULT_VARIANTS, Variant

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Study:
    """What to compute for every model: ranks, extra scenarios, and the checks to run."""

    ranks: tuple[int, ...] = DEFAULT_RANKS
    scenarios: tuple[Scenario, ...] = ()
    variants: tuple[Variant, ...] = DEFAULT_VARIANTS  # methods with options (reportgen.methods)
    merge_check: bool = True
    device: str = "auto"
    trust_remote_code: bool = False
    memory: MemoryAssumptions = MemoryAssumptions()
    merge_budget: float | None = None  # GiB the merge check may use; None: the device's default
    jobs: int = 1  # models analysed at once; the merge budget is shared between them
    cell_jobs: int = 1  # processes counting one model's cells with PEFT (a run of a single model)


@dataclass
class Progress:
    """Callbacks the CLI hooks a progress display into; the library never prints."""

    on_stage: Callable[[str, str], None] = field(default=lambda model, stage: None)
    on_cell: Callable[[], None] = field(default=lambda: None)
    on_cells: Callable[[int], None] = field(default=lambda total: None)  # cells the current model will count
    on_model_start: Callable[[str], None] = field(default=lambda model: None)
    on_model_end: Callable[[str, bool, float], None] = field(default=lambda model, ok, seconds: None)
    on_model_reused: Callable[[str, float], None] = field(default=lambda model, seconds: None)  # served from the cache


def environment() -> Environment:
    """The versions that produced a report."""
    return Environment(
        python=platform.python_version(),
        torch=version("torch"),
        transformers=version("transformers"),
        peft=version("peft"),
    )


@functools.cache
def load_libraries() -> None:
    """torch, transformers and peft, once per process, with what they import in turn (bitsandbytes, where it is
    installed, prints notes on its kernels). What they say while loading is about the environment, not a model:
    logged, never in a model's report, never on the terminal."""
    from .quiet import captured

    with captured() as said:
        from . import peft_count  # noqa: F401
    for message in said:
        log.info("while loading the libraries: %s", message)


def analyse_spec(spec: ModelSpec, slug: str, study: Study, progress: Progress | None = None) -> ModelReport:
    """The whole report of one model line (raises ReportgenError for input the user can fix).

    What libraries warn or print meanwhile goes into the report's ``warnings``, never to the terminal.
    """
    from .quiet import captured

    load_libraries()  # their import-time notes are not this model's
    with captured() as library_warnings:
        report = _analyse_stages(spec, slug, study, progress)
    return dataclasses.replace(report, warnings=tuple(library_warnings))


def _analyse_stages(spec: ModelSpec, slug: str, study: Study, progress: Progress | None) -> ModelReport:
    """Resolve, build, analyse, count, estimate and (with the study's merge check) merge one model."""
    # Imported here so that `reportgen --help` and usage errors never pay for torch.
    from .analyse import analyse
    from .build import build
    from .explain import count_lines
    from .memory import estimate
    from .memory_summary import memory_context
    from .peft_count import count

    progress = progress or Progress()
    progress.on_stage(spec.text, "resolve")
    resolved = resolve(spec)
    progress.on_stage(spec.text, "build")
    with _stage(spec.text, "build"):
        built = build(resolved, study.trust_remote_code)
    progress.on_stage(spec.text, "analyse")
    with _stage(spec.text, "analyse"):
        analysis = analyse(built, study.scenarios, study.variants)
    progress.on_stage(spec.text, "peft")
    with _stage(spec.text, "peft"):
        progress.on_cells(len(study.variants) * len(analysis.scenarios) * len(study.ranks))
        counted = count(built, analysis, study.ranks, study.variants, study.cell_jobs, progress.on_cell)
        explanation = count_lines(built.model, counted.reference, resolved.config)
    with _stage(spec.text, "memory"):
        memory = estimate(analysis, counted, built.config, study.memory, study.ranks)
    merge, merged_printout = MergeCheck(MergeStatus.SKIPPED, note="skipped: --no-merge-check was given"), ""
    if study.merge_check:
        progress.on_stage(spec.text, "merge")
        with _stage(spec.text, "merge"):
            started = time.perf_counter()
            merge, merged_printout = _merge_check(built.config, counted.reference_plan, study)
            merge = dataclasses.replace(merge, seconds=time.perf_counter() - started)
    return ModelReport(
        slug=slug,
        model=analysis.info,
        modules=analysis.rows,
        cells=counted.cells,
        ranks=study.ranks,
        scenarios=analysis.scenarios,
        peft_reference=counted.reference,
        printouts=Printouts(base=analysis.printout, peft=counted.printout, merged=merged_printout),
        merge_check=merge,
        environment=environment(),
        memory=memory,
        memory_assumptions=study.memory.stated(),
        memory_context=memory_context(study.memory),
        methods=tuple(variant.name for variant in study.variants),
        explanation=explanation,
    )


def _merge_check(config: Any, reference: Plan, study: Study) -> tuple[MergeCheck, str]:
    """The merge check on the walk-through's targets, then all-linear on a replica with every kind of layer.

    The walk-through's targets are its q, k, v, o (the model's own attention
    projections where those names match nothing; all-linear where it has none),
    handed to PEFT as target_modules and target_parameters as the reference cell names them.
    """
    from .merge import check_merge, combined_with_all_linear

    budget = merge_budget_bytes(study)
    if reference.reason or not (reference.modules or reference.parameters):
        modules: tuple[str, ...] = (ALL_LINEAR,)
        parameters: tuple[str, ...] = ()
    else:
        modules, parameters = reference.modules, reference.parameters
    first, printout = check_merge(config, modules, study.device, budget, study.trust_remote_code,
                                  parameters=parameters)
    if modules == (ALL_LINEAR,):
        return first, printout  # all-linear already: on the whole model, or on a replica with every kind of layer
    second, _ = check_merge(config, (ALL_LINEAR,), study.device, budget, study.trust_remote_code, replica=True)
    return combined_with_all_linear(first, second), printout


def merge_budget_bytes(study: Study) -> int:
    """The run's merge budget in bytes: --merge-budget GiB, else the device's default (shared by --jobs workers)."""
    from .formatting import GIB
    from .merge import default_budget_bytes, select_device

    if study.merge_budget is not None:
        return int(study.merge_budget * GIB)
    return default_budget_bytes(select_device(study.device))


@contextlib.contextmanager
def _stage(model: str, stage: str) -> Iterator[None]:
    """Log how long one stage of one model took (shown with --verbose)."""
    start = time.perf_counter()
    yield
    log.info("%s: %s took %.2f s", model, stage, time.perf_counter() - start)


def run(
    specs: Sequence[ModelSpec],
    study: Study,
    notes: Sequence[str] = (),
    progress: Progress | None = None,
    jobs: int = 1,
    finish: Callable[[ModelReport], Sequence[str]] | None = None,
    slugs: Sequence[str] | None = None,
) -> RunResult:
    """Every model's report, in models-file order; a model that fails is kept as a failure, never a crash.

    With ``jobs`` > 1 the models are spread over that many worker processes
    (each model's analysis is independent); the order of the result is the same.
    A single model's cells are spread over the processes instead.
    ``finish`` is called on each model's report as soon as it is ready, in the
    process that analysed it: the CLI writes the model's pages there, so that
    writing them overlaps the other models' analyses. What it raises is raised here;
    the files it returns are the result's ``files``.
    ``slugs`` are the models' folder names when the caller chose them (a run of part of a models file).
    """
    progress = progress or Progress()
    slugs = list(slugs) if slugs is not None else unique_slugs([spec.text for spec in specs])
    if specs:
        progress.on_stage(specs[0].text, "loading torch, transformers and peft")
        with _stage("all models", "loading torch, transformers and peft"):
            # Loaded once here: the first model's time is then its own, and forked workers start warm.
            load_libraries()
    if jobs > 1 and len(specs) > 1:
        jobs = min(jobs, len(specs))
        outcomes, files = _run_parallel(specs, slugs, dataclasses.replace(study, jobs=jobs), progress, jobs, finish)
    else:
        if jobs > 1:
            # One model: its cells are counted on that many processes instead. (Forked before this
            # process has run any tensor computation: its own merge check comes after the counts.)
            study = dataclasses.replace(study, cell_jobs=jobs)
        outcomes, files = [], []
        for spec, slug in zip(specs, slugs):
            progress.on_model_start(spec.text)
            outcome, seconds, written = _analyse_one(spec, slug, study, progress, finish)
            progress.on_model_end(spec.text, isinstance(outcome, ModelReport), seconds)
            outcomes.append(outcome)
            files += written
    return RunResult(
        reports=tuple(o for o in outcomes if isinstance(o, ModelReport)),
        failures=tuple(o for o in outcomes if isinstance(o, ModelFailure)),
        ranks=study.ranks,
        environment=environment(),
        notes=tuple(notes),
        files=tuple(files),
    )


def _analyse_one(
    spec: ModelSpec,
    slug: str,
    study: Study,
    progress: Progress | None = None,
    finish: Callable[[ModelReport], Sequence[str]] | None = None,
) -> tuple[ModelReport | ModelFailure, float, Sequence[str]]:
    """One model's report, or its failure line, the seconds its analysis took, and what ``finish`` on a report wrote.

    Only ``finish`` may raise: a model's own problem is its failure line, never an exception.
    """
    start = time.perf_counter()
    outcome: ModelReport | ModelFailure
    try:
        outcome = analyse_spec(spec, slug, study, progress)
    except ReportgenError as exc:
        outcome = _failure(spec, slug, str(exc))
    except Exception as exc:  # a bug or an input nobody foresaw: a failure line, never a traceback
        log.info("%s: %s failed with this traceback:", spec.origin, spec.text, exc_info=True)
        outcome = _failure(
            spec, slug, f"unexpected {type(exc).__name__}: {exc} (run with --verbose for the traceback)"
        )
    seconds = time.perf_counter() - start
    written: Sequence[str] = ()
    if finish is not None and isinstance(outcome, ModelReport):
        if progress is not None:
            progress.on_stage(spec.text, "write")
        with _stage(spec.text, "write"):
            written = finish(outcome)
    return outcome, seconds, written


def _worker_init(threads: int, level: int) -> None:
    """A worker process: share the cores fairly and log like the parent."""
    import torch

    torch.set_num_threads(threads)
    logging.getLogger("reportgen").setLevel(level)


def _run_parallel(
    specs: Sequence[ModelSpec],
    slugs: Sequence[str],
    study: Study,
    progress: Progress,
    jobs: int,
    finish: Callable[[ModelReport], Sequence[str]] | None,
) -> tuple[list[ModelReport | ModelFailure], list[str]]:
    """The models spread over worker processes; progress advances as each model finishes."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    # Fork: the workers inherit the loaded libraries; this process has run no tensor computation,
    # so no thread pool is forked half-initialised.
    context = multiprocessing.get_context("fork")
    level = logging.getLogger("reportgen").getEffectiveLevel()
    if study.merge_check:  # one budget for the whole run: a worker's check waits until its memory is free
        from .budget import share

        share(merge_budget_bytes(study))
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(threads, level)) as pool:
        futures = [pool.submit(_analyse_one, spec, slug, study, None, finish) for spec, slug in zip(specs, slugs)]
        outcomes: list[ModelReport | ModelFailure] = []
        files: list[str] = []
        try:
            for spec, future in zip(specs, futures):
                progress.on_model_start(spec.text)
                outcome, seconds, written = future.result()
                progress.on_model_end(spec.text, isinstance(outcome, ModelReport), seconds)
                outcomes.append(outcome)
                files += written
        except BaseException:
            pool.shutdown(cancel_futures=True)  # a write failed or Ctrl-C: start no other model
            raise
        finally:
            from .budget import unshare

            unshare()
    return outcomes, files


def _failure(spec: ModelSpec, slug: str, message: str) -> ModelFailure:
    """A failure in one line that starts with the file and line, and names the model."""
    message = one_line(message, limit=400).removeprefix(f"{spec.origin}: ")
    if spec.text not in message:
        message = f"{spec.text}: {message}"
    message = f"{spec.origin}: {message}"
    log.debug("%s", message)
    return ModelFailure(id=spec.text, slug=slug, line=_line(spec), error=message)


def _line(spec: ModelSpec) -> int:
    _, _, number = spec.origin.rpartition(":")
    return int(number) if number.isdigit() else 0
