"""The pipeline: resolve -> build -> analyse -> PEFT -> (merge) for each model, failures kept apart."""

from __future__ import annotations

import contextlib
import logging
import platform
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version

from . import data
from .data import (
    Environment, MemoryAssumptions, MergeCheck, ModelFailure, ModelReport, Printouts, RunResult, Scenario,
)
from .errors import ReportgenError
from .resolve import ModelSpec, resolve

log = logging.getLogger(__name__)

DEFAULT_RANKS = (8, 16)
MAX_SLUG = 80


@dataclass(frozen=True)
class Study:
    """What to compute for every model: ranks, extra scenarios, and the checks to run."""

    ranks: tuple[int, ...] = DEFAULT_RANKS
    scenarios: tuple[Scenario, ...] = ()
    merge_check: bool = True
    device: str = "auto"
    trust_remote_code: bool = False
    memory: MemoryAssumptions = MemoryAssumptions()


@dataclass
class Progress:
    """Callbacks the CLI hooks a progress display into; the library never prints."""

    on_stage: Callable[[str, str], None] = field(default=lambda model, stage: None)
    on_cell: Callable[[], None] = field(default=lambda: None)


def environment() -> Environment:
    """The versions that produced a report."""
    return Environment(
        python=platform.python_version(),
        torch=version("torch"),
        transformers=version("transformers"),
        peft=version("peft"),
    )


def slugify(model_id: str) -> str:
    """A folder name for a model id: letters, digits, '.', '_' and '-' only, never '..', bounded."""
    slug = model_id.replace("/", "--")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", slug).strip(".-_")
    return slug[:MAX_SLUG] or "model"


def unique_slugs(ids: Sequence[str]) -> list[str]:
    """One slug per id, made distinct with a numeric suffix where two ids would collide."""
    seen: dict[str, int] = {}
    slugs: list[str] = []
    for model_id in ids:
        slug = slugify(model_id)
        if slug.lower() in seen:
            seen[slug.lower()] += 1
            slug = f"{slug}-{seen[slug.lower()]}"
        seen[slug.lower()] = seen.get(slug.lower(), 1)
        slugs.append(slug)
    return slugs


def analyse_spec(spec: ModelSpec, slug: str, study: Study, progress: Progress | None = None) -> ModelReport:
    """The whole report of one model line (raises ReportgenError for input the user can fix)."""
    # Imported here so that `reportgen --help` and usage errors never pay for torch.
    from .analyse import SEED_SCENARIOS, default_scenarios, formula_cell, model_info, module_rows
    from .build import build_meta_model, load_config
    from .memory import memory_rows, memory_shape
    from .peft_count import count_cell, reference_step
    from .roles import dimensions

    progress = progress or Progress()
    progress.on_stage(spec.text, "resolve")
    resolved = resolve(spec)
    progress.on_stage(spec.text, "build")
    with _stage(spec.text, "build"):
        config = load_config(resolved, study.trust_remote_code)
        model = build_meta_model(config, study.trust_remote_code)
    progress.on_stage(spec.text, "analyse")
    with _stage(spec.text, "analyse"):
        dims = dimensions(config)
        rows = module_rows(model, dims)
        if not rows:
            raise ReportgenError(f"{spec.origin}: {resolved.id} has no Linear, Conv1D or expert layer in its blocks")
        info = model_info(model, resolved.id, resolved.source, rows, dims)
        scenarios = default_scenarios(rows, study.scenarios)
        base_printout = repr(model)
        shape = memory_shape(info, rows, config, dims.num_experts)
    progress.on_stage(spec.text, "peft")
    cells: list[data.Cell] = []
    with _stage(spec.text, "peft"):
        for scenario in scenarios:
            for rank in study.ranks:
                cell, chosen = formula_cell(scenario, rank, rows, info.total_params)
                cells.append(count_cell(model, cell, chosen))
                progress.on_cell()
        # The walk-through's PEFT step targets q, k, v and o at r=16.
        reference_cell, reference_rows = formula_cell(SEED_SCENARIOS[1], 16, rows, info.total_params)
        reference, peft_printout = (None, "")
        if reference_rows:
            reference, peft_printout = reference_step(model, reference_cell, reference_rows)
    with _stage(spec.text, "memory"):
        memory = memory_rows(info, rows, tuple(cells), shape, study.memory, study.ranks)
    merge = MergeCheck(status="not_run", note="the merge check is not implemented yet")
    if not study.merge_check:
        merge = MergeCheck(status="skipped", note="skipped: --no-merge-check was given")
    return ModelReport(
        slug=slug,
        model=info,
        modules=rows,
        cells=tuple(cells),
        ranks=study.ranks,
        scenarios=scenarios,
        peft_reference=reference,
        printouts=Printouts(base=base_printout, peft=peft_printout),
        merge_check=merge,
        environment=environment(),
        memory=memory,
        memory_assumptions=study.memory.stated(),
    )


@contextlib.contextmanager
def _stage(model: str, stage: str) -> Iterator[None]:
    """Log how long one stage of one model took (shown with --verbose)."""
    start = time.perf_counter()
    yield
    log.info("%s: %s took %.2f s", model, stage, time.perf_counter() - start)


def run(
    specs: Sequence[ModelSpec], study: Study, notes: Sequence[str] = (), progress: Progress | None = None
) -> RunResult:
    """Every model's report, in models-file order; a model that fails is kept as a failure, never a crash."""
    reports: list[ModelReport] = []
    failures: list[ModelFailure] = []
    for spec, slug in zip(specs, unique_slugs([spec.text for spec in specs])):
        try:
            reports.append(analyse_spec(spec, slug, study, progress))
        except ReportgenError as exc:
            message = str(exc)
            if not message.startswith(spec.origin):
                message = f"{spec.origin}: {message}"
            log.error("%s", message)
            failures.append(ModelFailure(id=spec.text, slug=slug, line=_line(spec), error=message))
    return RunResult(
        reports=tuple(reports),
        failures=tuple(failures),
        ranks=study.ranks,
        environment=environment(),
        notes=tuple(notes),
    )


def _line(spec: ModelSpec) -> int:
    _, _, number = spec.origin.rpartition(":")
    return int(number) if number.isdigit() else 0
