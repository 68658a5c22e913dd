"""Check the memory estimate: against published GPU runs (reproduced with reportgen's options) and CPU measurements.

``make validate-memory`` runs both and writes benchmarks/MEMORY.md and the summary the reports quote
(reportgen/memory_checks/summary.json). A published run is reported, never tuned to.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .data import MemoryAssumptions, MemoryRow, MemoryValidation
from .memory_measure import Measurement

CHECKS = "memory_checks"
RUNS_FILE = "published_runs.toml"
CPU_BAND_PERCENT = 10.0


@dataclass(frozen=True)
class PublishedRun:
    """One published measured peak, with the settings its source states."""

    model: str  # the model the source ran
    config: str  # a bundled id, or a config file under reportgen/memory_checks/
    method: str  # lora or qlora
    targets: str  # module names, comma-separated, as reportgen's --scenario takes them
    batch_size: int
    peak_gb: float  # GB = 10^9 bytes
    source: str
    not_reproducible: str = ""  # why reportgen's options cannot reproduce the run ("" when they can)

    @property
    def measured_bytes(self) -> int:
        return round(self.peak_gb * 1e9)

    @property
    def config_argument(self) -> str:
        """The MODEL argument for reportgen: the bundled id, or the config file's path in the repository."""
        return f"reportgen/{CHECKS}/{self.config}" if self.config.endswith(".json") else self.config


@dataclass(frozen=True)
class RunSource:
    """Where a group of runs comes from, how they were measured, and reportgen's options for their settings."""

    name: str
    title: str
    measured: str
    settings: str
    options: tuple[str, ...]
    method_options: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class RunCheck:
    """A published run against its estimate under the same settings."""

    run: PublishedRun
    options: tuple[str, ...]  # reportgen inspect's options that reproduce its settings
    row: MemoryRow

    @property
    def estimated_bytes(self) -> int:
        """What torch.cuda.max_memory_allocated() sees: the total less paged optimizer states."""
        return self.row.allocated_bytes

    @property
    def ratio(self) -> float:
        return self.estimated_bytes / self.run.measured_bytes

    @property
    def command(self) -> str:
        return shlex.join(["reportgen", "inspect", self.run.config_argument, *self.options])


@dataclass(frozen=True)
class PublishedRuns:
    """The published runs file: its band, sources and runs."""

    band_percent: float
    sources: dict[str, RunSource]
    runs: tuple[PublishedRun, ...]


def load_runs() -> PublishedRuns:
    """reportgen/memory_checks/published_runs.toml as records."""
    text = (resources.files("reportgen") / CHECKS / RUNS_FILE).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    sources = {
        name: RunSource(name, source["title"], source["measured"], source["settings"], tuple(source["options"]),
                        {method: tuple(source[f"{method}_options"]) for method in ("lora", "qlora")})
        for name, source in data["sources"].items()
    }
    runs = tuple(PublishedRun(**run) for run in data["runs"])
    return PublishedRuns(float(data["band_percent"]), sources, runs)


def run_options(run: PublishedRun, source: RunSource) -> tuple[str, ...]:
    """reportgen's options for a run: its source's settings, its method's optimizer, its batch and targets."""
    return (*source.options, *source.method_options[run.method], "--batch-size", str(run.batch_size),
            "--scenario", f"run={run.targets}")


def parse_options(options: tuple[str, ...]) -> tuple[MemoryAssumptions, tuple[int, ...], Any]:
    """The memory assumptions, ranks and scenarios reportgen's own command line makes of these options."""
    from .cli import MEMORY_OPTIONS, inspect

    context = inspect.make_context("inspect", ["MODEL", *options])
    params = context.params
    assumptions = MemoryAssumptions(**{name: params[name] for name in MEMORY_OPTIONS})
    return assumptions, params["ranks"], params["scenarios"]


def estimate_run(run: PublishedRun, source: RunSource) -> RunCheck:
    """A run's settings through reportgen's options, its model built on the meta device, its row estimated."""
    from .analyse import analyse
    from .build import build
    from .memory import adapter_row, memory_shape
    from .methods import formula_cell
    from .resolve import ModelSpec, resolve
    from .variants import BUILTIN_VARIANTS

    options = run_options(run, source)
    assumptions, ranks, scenarios = parse_options(options)
    (scenario,) = scenarios
    assumptions = dataclasses.replace(assumptions, scenario=scenario.name, rank=ranks[0])
    path = resources.files("reportgen") / CHECKS / run.config
    spec = ModelSpec(str(path) if run.config.endswith(".json") else run.config, f"published run {run.model}")
    built = build(resolve(spec))
    analysis = analyse(built, scenarios)
    cell, plan = formula_cell(scenario, ranks[0], BUILTIN_VARIANTS["lora"], analysis.reachable, analysis.facts)
    shape = memory_shape(analysis.info.dimensions, analysis.rows, built.config)
    row = adapter_row(run.method, cell, plan.rows, analysis.info, analysis.rows, shape, assumptions, True)
    return RunCheck(run, options, row)


def check_runs(published: PublishedRuns | None = None) -> tuple[RunCheck, ...]:
    """Every published run against its estimate."""
    published = published or load_runs()
    return tuple(estimate_run(run, published.sources[run.source]) for run in published.runs)


def within(ratio: float, band_percent: float) -> bool:
    return abs(ratio - 1) * 100 <= band_percent


def summarise(measurements: tuple[Measurement, ...], checks: tuple[RunCheck, ...],
              band_percent: float) -> MemoryValidation:
    """The figures a report quotes, computed from the measurements and the runs."""
    reproducible = [check for check in checks if not check.run.not_reproducible]
    ratios = [check.ratio for check in reproducible]
    return MemoryValidation(
        cpu_cases=len(measurements),
        cpu_worst_percent=round(max(abs(m.ratio - 1) for m in measurements) * 100, 1),
        gpu_runs=len(reproducible),
        gpu_within=sum(1 for ratio in ratios if within(ratio, band_percent)),
        gpu_band_percent=band_percent,
        gpu_low=round(min(ratios), 2),
        gpu_high=round(max(ratios), 2),
        excluded=len(checks) - len(reproducible),
    )


def write_summary(summary: MemoryValidation, package: Path) -> Path:
    """The summary the reports quote, inside the package (reportgen/memory_checks/summary.json)."""
    path = package / CHECKS / "summary.json"
    path.write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n", encoding="utf-8")
    return path
