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
from .memory_data import PublishedCheck
from .errors import ReportgenError
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
    note: str = ""  # why the estimate misses the run, for a run outside the band (found, never tuned away)

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
    if (assumptions.scenario, assumptions.rank or ranks[0]) != (scenario.name, ranks[0]):
        raise ReportgenError(f"{run.model}: the run's options must make its scenario the headline memory row")
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
    published = []
    for method in dict.fromkeys(check.run.method for check in reproducible):
        ratios = [check.ratio for check in reproducible if check.run.method == method]
        published.append(PublishedCheck(method, len(ratios), sum(1 for r in ratios if within(r, band_percent)),
                                        round(min(ratios), 2), round(max(ratios), 2)))
    return MemoryValidation(
        cpu_cases=len(measurements),
        cpu_worst_percent=round(max(abs(m.ratio - 1) for m in measurements) * 100, 1),
        cpu_band_percent=CPU_BAND_PERCENT,
        band_percent=band_percent,
        published=tuple(published),
        excluded=len(checks) - len(reproducible),
    )


def write_summary(summary: MemoryValidation, package: Path) -> Path:
    """The summary the reports quote, inside the package (reportgen/memory_checks/summary.json)."""
    path = package / CHECKS / "summary.json"
    path.write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n", encoding="utf-8")
    return path


def _gb(value: int) -> str:
    return f"{value / 1e9:.2f}"


def _cpu_section(measurements: tuple[Measurement, ...]) -> list[str]:
    from .memory_measure import MEASURED_LAYERS, MEASURED_MODEL, MEASURED_VOCAB, RANK

    lines = [
        "## Activations measured on CPU", "",
        f"One forward pass with labels of `{MEASURED_MODEL}` shrunk to {MEASURED_LAYERS} layers and a vocabulary "
        f"of {MEASURED_VOCAB:,} (same widths, random bf16 weights), batch 1, under `torch.autograd.graph.saved_tensors_hooks`: the bytes of every "
        "distinct storage autograd keeps for the backward pass, weights and buffers excluded. LoRA is PEFT's "
        f"all-linear at r={RANK}. With gradient checkpointing (transformers' non-reentrant checkpoint) the "
        "checkpoint keeps each layer's inputs (recorded where transformers hands them to it) and recomputes one "
        "layer at a time: that layer's forward is measured on its own under the same hooks. The estimate is "
        "reportgen's activation term without the loss's transient buffers (which are not saved tensors); on CPU "
        "torch's unfused dropout keeps its mask in the input's dtype, so the estimate of those cases does too. "
        "QLoRA is the same model loaded in 4 bits with the QLoRA recipe (transformers' BitsAndBytesConfig: NF4, "
        "double quantisation, bf16 compute) on bitsandbytes' CPU backend, with the same adapters, as loaded "
        "and after PEFT's prepare_model_for_kbit_training; its 4-bit matmul keeps its tensors on its autograd "
        "context, where the hooks cannot see them, so the graph is walked for those too (weights and what the "
        "hooks saw excluded). Today's bitsandbytes keeps no input there; bitsandbytes before 0.43.2 kept each "
        "input, which is emulated (its matmul's forward made to keep its input, as it did) and compared with "
        "the estimate under --bnb-keeps-inputs.",
        "", f"Band: {CPU_BAND_PERCENT:g}%.", "",
        "| case | part | measured (bytes) | estimate (bytes) | estimate / measured |",
        "|:---|:---|---:|---:|---:|",
    ]
    for m in measurements:
        for part, measured, estimated in m.parts:
            ratio = f"{estimated / measured:.3f}" if measured else "-"
            lines.append(f"| {m.case.label} | {part} | {measured:,} | {estimated:,} | {ratio} |")
        if len(m.parts) > 1:
            lines.append(f"| {m.case.label} | **sum** | **{m.measured:,}** | **{m.estimated:,}** | **{m.ratio:.3f}** |")
    return lines


def _gpu_section(published: PublishedRuns, checks: tuple[RunCheck, ...]) -> list[str]:
    lines = ["## Published GPU runs", ""]
    for source in published.sources.values():
        lines += [f"**{source.name}**: {source.title}. Measured with {source.measured}. {source.settings}", ""]
    lines += [
        f"Each run's settings go through reportgen's own options (the command in the table prints the run's "
        "row as its headline LoRA or QLoRA row). The estimate is what `torch.cuda.max_memory_allocated()` can see: the total less a paged optimizer's states (bitsandbytes keeps "
        f"them in CUDA unified memory, outside PyTorch's allocator). GB = 10^9 bytes. Band: {published.band_percent:g}%.",
        "",
        "| # | run | reportgen command | estimate (GB) | measured (GB) | measured - estimate (GB) | estimate / measured | |",
        "|---:|:---|:---|---:|---:|---:|---:|:---|",
    ]
    for index, check in enumerate(checks, 1):
        run = check.run
        verdict = (f"not reproducible: {run.not_reproducible}" if run.not_reproducible else
                   "within the band" if within(check.ratio, published.band_percent) else f"outside: {run.note}")
        lines.append(
            f"| {index} | {run.model}, {run.method}, micro-batch {run.batch_size} | `{check.command}` | "
            f"{_gb(check.estimated_bytes)} | {run.peak_gb:.2f} | {_gb(run.measured_bytes - check.estimated_bytes)} | "
            f"{check.ratio:.3f} | {verdict} |")
    return lines


def memory_markdown(measurements: tuple[Measurement, ...], published: PublishedRuns,
                    checks: tuple[RunCheck, ...], versions: str) -> str:
    """benchmarks/MEMORY.md: the CPU measurements and the published runs against the estimate."""
    summary = summarise(measurements, checks, published.band_percent)
    lines = [
        "# The memory estimate against measurements", "",
        f"Written by `make validate-memory` ({versions}); the reports quote its summary "
        "(reportgen/memory_checks/summary.json). A run is reported, never tuned to.", "",
        f"- {summary.cpu_label}", f"- {summary.gpu_label}",
        "- This project's own GPU measurements (LoRA and QLoRA training steps with `torch.cuda.max_memory_allocated`) "
        "are not made: no GPU was available when this validation was written.", "",
        *_cpu_section(measurements), "", *_gpu_section(published, checks), "",
    ]
    return "\n".join(lines)
