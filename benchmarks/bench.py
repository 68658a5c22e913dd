"""The benchmark behind `make bench`: writes benchmarks/RESULTS.md.

Every measurement runs in a fresh subprocess, so its wall time includes the
imports a user pays for, and its peak memory is that process's own maximum
resident set size (from os.wait4). Each figure is the median of several runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
REPORTGEN = str(Path(PYTHON).parent / "reportgen")
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
WALKTHROUGH_MODELS = (
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "meta-llama/Llama-3.2-1B-Instruct",
)
LLAMA_1B = "meta-llama/Llama-3.2-1B-Instruct"
LLAMA_405B = "meta-llama/Llama-3.1-405B"

# One model through reportgen's analysis: resolve, meta build, module table, every default cell counted by PEFT
# (on one process per core, as `reportgen inspect MODEL --jobs 0` does). It prints the seconds of the analysis
# itself, after the libraries are imported.
ANALYSE = """
import os, sys, time
import reportgen.peft_count
from reportgen.pipeline import Study, analyse_spec
from reportgen.resolve import ModelSpec
start = time.perf_counter()
report = analyse_spec(ModelSpec(sys.argv[1], "bench"), "bench", Study(merge_check=False, cell_jobs=os.cpu_count()))
assert report.all_confirmed, "formula and PEFT disagree"
print(time.perf_counter() - start)
"""

# The walk-through's approach without the download: materialise the fp32 model from its config
# (transformers' own random init, as a downloaded checkpoint would be loaded into) and count per module type.
# The merge check alone on one model (issue 4's goal): materialise, adapt, merge, compare, in fp32 on CPU.
MERGE = """
import sys
from reportgen.build import load_config
from reportgen.merge import check_merge
from reportgen.resolve import ModelSpec, resolve
config = load_config(resolve(ModelSpec(sys.argv[1], "bench")))
check, _ = check_merge(config, ("q_proj", "k_proj", "v_proj", "o_proj"), "cpu")
assert check.status == "passed", check
print(check.materialised)
"""

WALKTHROUGH = """
import sys, torch
from collections import Counter
from transformers import AutoModelForCausalLM
from reportgen.build import load_config
from reportgen.resolve import ModelSpec, resolve
config = load_config(resolve(ModelSpec(sys.argv[1], "bench")))
model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
counts = Counter()
for name, module in model.named_modules():
    if isinstance(module, torch.nn.Linear):
        counts[name.rsplit(".", 1)[-1]] += module.weight.numel()
print(sum(p.numel() for p in model.parameters()), dict(counts))
"""


@dataclass(frozen=True)
class Measure:
    """Median wall time (s) and peak RSS (MB) over several runs of one command."""

    seconds: float
    peak_mb: float
    runs: int
    inner: float | None = None  # median of what the command printed last (seconds it timed itself)
    cpu: float = 0.0  # median CPU seconds (user + system, worker processes included)


def measure(command: list[str], runs: int) -> Measure:
    """Run a command several times in fresh processes; the median time and the largest peak RSS."""
    times: list[float] = []
    peaks: list[float] = []
    inner: list[float] = []
    cpu: list[float] = []
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    for _ in range(runs):
        start = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
            _, status, usage = os.wait4(process.pid, 0)
            elapsed = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode()
        last = stdout.strip().splitlines()[-1:] or [""]
        try:
            inner.append(float(last[0]))
        except ValueError:
            pass
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"benchmark command failed: {' '.join(command)}\n{stderr[-2000:]}")
        times.append(elapsed)
        peaks.append(usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
        cpu.append(usage.ru_utime + usage.ru_stime)
    return Measure(statistics.median(times), max(peaks), runs, statistics.median(inner) if inner else None,
                   statistics.median(cpu))


def merged(measures: list[Measure]) -> Measure:
    """The median time and CPU, and the largest peak, of single runs."""
    return Measure(statistics.median(m.seconds for m in measures), max(m.peak_mb for m in measures), len(measures),
                   None, statistics.median(m.cpu for m in measures))


def measure_pairs(first: list[str], second: list[str], runs: int) -> tuple[Measure, Measure, float]:
    """Two commands run alternately, so that both see the same machine; their measures and the median ratio."""
    pairs = [(measure(first, 1), measure(second, 1)) for _ in range(runs)]
    ratio = statistics.median(a.seconds / b.seconds for a, b in pairs)
    return merged([a for a, _ in pairs]), merged([b for _, b in pairs]), ratio


def catalog() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from reportgen.resolve import catalog_ids

    return catalog_ids()


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total_kb = int(meminfo.read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.0f} GiB memory"
    from importlib.metadata import version

    return (
        f"{os.cpu_count()} cores ({cpu}){memory}; Linux {platform.release()}; Python {platform.python_version()}, "
        f"torch {version('torch')}, transformers {version('transformers')}, peft {version('peft')}"
    )


@dataclass(frozen=True)
class CacheMeasures:
    """The whole catalog with merge checks: cold (empty cache), warm, one line added, and that line's model alone."""

    cold: Measure
    warm: Measure
    identical: bool  # the warm run wrote the cold run's files, byte for byte, and no other
    added: Measure
    single: Measure
    files: int


def site_bytes(out: Path) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}


def measure_cache(models_file: Path, scratch: Path, runs: int) -> CacheMeasures:
    """The result cache at work on the catalog with merge checks (`reportgen report`, one process).

    The line added is a model the catalog does not hold: Llama-3.2-1B-Instruct's config cut to 8 layers,
    as a local config.json; "one model's analysis" is that model alone through an empty cache.
    """
    import json

    cache = scratch / "cache"

    def report(models: Path, out: str, cache_dir: Path = cache) -> list[str]:
        return [REPORTGEN, "report", "--models", str(models), "--out", str(scratch / out), "--quiet",
                "--cache-dir", str(cache_dir)]

    cold = measure(report(models_file, "cold"), 1)
    warm = measure(report(models_file, "warm"), runs)
    cold_files, warm_files = site_bytes(scratch / "cold"), site_bytes(scratch / "warm")
    extra = scratch / "extra" / "config.json"
    extra.parent.mkdir()
    config = json.loads((ROOT / "reportgen" / "catalog" / "meta-llama--Llama-3.2-1B-Instruct.json").read_text())
    extra.write_text(json.dumps(config | {"num_hidden_layers": 8}, indent=2))
    added_file = scratch / "models-added.txt"
    added_file.write_text(models_file.read_text() + f"{extra.parent}\n")
    single_file = scratch / "models-single.txt"
    single_file.write_text(f"{extra.parent}\n")
    # Alternately, so that both see the same machine; each added run starts from the warm cache, each
    # single run from an empty one.
    singles, addeds = [], []
    for n in range(runs):
        shutil.copytree(cache, scratch / f"cache-{n}")
        singles.append(measure(report(single_file, f"single-{n}", scratch / f"cache-single-{n}"), 1))
        addeds.append(measure(report(added_file, f"added-{n}", scratch / f"cache-{n}"), 1))
    return CacheMeasures(cold, warm, cold_files == warm_files, merged(addeds), merged(singles), len(cold_files))



def cache_lines(cached: CacheMeasures, models: int) -> list[str]:
    """The result cache's section of RESULTS.md."""
    share = cached.warm.seconds / cached.cold.seconds
    one_model = cached.added.seconds - cached.warm.seconds
    return [
        "## Re-running with the result cache",
        "",
        f"The whole catalog ({models} models, default matrix, merge checks, one process) through an empty cache",
        "(cold, once), then again with nothing changed (warm, into a new output folder, median of the runs),",
        "then with one line added to the models file: Llama-3.2-1B-Instruct's config cut to 8 layers, a",
        "local config.json the cache has never seen. \"One model's analysis\" is that model alone through an",
        "empty cache, imports included. The last two run alternately, each as often as the others (medians).",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        f"| warm re-run at most 10% of the cold run | {cached.warm.seconds:.1f} s vs {cached.cold.seconds:.1f} s "
        f"({share:.1%}) | {verdict(share <= 0.10)} |",
        f"| warm re-run writes byte-identical files | {cached.files} files, "
        f"{'identical' if cached.identical else 'DIFFERENT'} | {verdict(cached.identical)} |",
        f"| one line added costs about one model's analysis (at most 1.25x that model alone plus the warm re-run) | "
        f"{cached.added.seconds:.1f} s: {one_model:.1f} s beyond the warm re-run; the model alone "
        f"{cached.single.seconds:.1f} s | "
        f"{verdict(cached.added.seconds <= 1.25 * (cached.single.seconds + cached.warm.seconds))} |",
        "",
        "| run | time (s) | CPU (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|",
        f"| cold | {cached.cold.seconds:.1f} | {cached.cold.cpu:.1f} | {cached.cold.peak_mb:.0f} |",
        f"| warm | {cached.warm.seconds:.1f} | {cached.warm.cpu:.1f} | {cached.warm.peak_mb:.0f} |",
        f"| one line added | {cached.added.seconds:.1f} | {cached.added.cpu:.1f} | {cached.added.peak_mb:.0f} |",
        f"| the added model alone, empty cache | {cached.single.seconds:.1f} | {cached.single.cpu:.1f} | "
        f"{cached.single.peak_mb:.0f} |",
        "",
    ]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (the median is reported)")
    args = parser.parse_args()
    runs = args.runs
    ids = catalog()
    lines: list[str] = []

    print("reportgen --help ...", flush=True)
    help_time = measure([REPORTGEN, "--help"], max(runs, 5))

    print("per-model analysis ...", flush=True)
    per_model = {model: measure([PYTHON, "-c", ANALYSE, model], runs) for model in ids}

    print("walk-through approach ...", flush=True)
    walkthrough = {model: measure([PYTHON, "-c", WALKTHROUGH, model], runs) for model in WALKTHROUGH_MODELS
                   if model != LLAMA_1B}

    print("merge check ...", flush=True)
    merge_1b = measure([PYTHON, "-c", MERGE, LLAMA_1B], runs)

    print("whole catalog ...", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        models_file = Path(scratch) / "models.txt"
        models_file.write_text("\n".join(ids) + "\n")
        base = [REPORTGEN, "report", "--models", str(models_file), "--out", str(Path(scratch) / "out"), "--quiet"]
        # The goal's two sides run alternately: this machine's speed drifts between minutes.
        catalog_fast, walkthrough[LLAMA_1B], ratio = measure_pairs(
            base + ["--no-merge-check", "--jobs", "0", "--no-cache"], [PYTHON, "-c", WALKTHROUGH, LLAMA_1B], runs)
        catalog_serial = measure(base + ["--no-merge-check", "--no-cache"], runs)
        print("result cache: cold, warm, one line added ...", flush=True)
        cached = measure_cache(models_file, Path(scratch), runs)  # its cold run is the catalog with merge checks
        catalog_merge = cached.cold

    lines += [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/bench.py`); do not edit by hand.",
        "",
        f"Machine: {machine()}.",
        "",
        f"Every figure is the median wall time of {runs} fresh processes (imports included) and the largest",
        "peak resident set size among them (for a run with worker processes, the largest single process:",
        "os.wait4 reports the maximum over the process and the children it waited for, not their sum).",
        "The catalog with merge checks runs once. The whole catalog and the walk-through's approach on",
        f"{LLAMA_1B} run alternately, one after the other, {runs} times: the goal compares the medians,",
        "and the ratio is the median of the pairs' ratios. CPU seconds are user plus system time,",
        "worker processes included.",
        "",
        "## Goals",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
    ]
    llama_walk = walkthrough[LLAMA_1B]
    lines.append(
        f"| whole catalog ({len(ids)} models, default matrix, PEFT count of every cell, no merge check, "
        "`--jobs 0`, pages and charts written) "
        f"no slower than the walk-through's approach on {LLAMA_1B} alone | {catalog_fast.seconds:.1f} s vs "
        f"{llama_walk.seconds:.1f} s ({ratio:.2f}x) | {verdict(catalog_fast.seconds <= llama_walk.seconds)} |"
    )
    lines.append(
        f"| whole catalog peak memory at most 1.5 GB (one process, so the peak is the whole run's) | "
        f"{catalog_serial.peak_mb:.0f} MB | {verdict(catalog_serial.peak_mb <= 1500)} |"
    )
    big = per_model[LLAMA_405B]
    lines.append(
        f"| {LLAMA_405B} analysed with PEFT counts in under 10 s and 1 GB (the analysis; the process "
        f"with its imports took {big.seconds:.1f} s) | {big.inner or 0:.1f} s, {big.peak_mb:.0f} MB | "
        f"{verdict((big.inner or 99) < 10 and big.peak_mb < 1024)} |"
    )
    lines.append(f"| `reportgen --help` in under 1 s | {help_time.seconds:.2f} s | {verdict(help_time.seconds < 1)} |")
    fp32_mb = 1_235_814_400 * 4 / 2**20  # Llama-3.2-1B-Instruct's published total, 4 bytes each
    lines.append(
        f"| merge check of {LLAMA_1B} (whole model, fp32, CPU) under 15 s, peak memory at most 1.5x the fp32 "
        f"model ({fp32_mb:.0f} MB) | {merge_1b.seconds:.1f} s, {merge_1b.peak_mb:.0f} MB "
        f"({merge_1b.peak_mb / fp32_mb:.2f}x) | {verdict(merge_1b.seconds < 15 and merge_1b.peak_mb <= 1.5 * fp32_mb)} |"
    )
    lines += [
        "",
        "## Per model: analysis with PEFT counts of every default cell",
        "",
        "The cells are counted on one process per core, as `reportgen inspect MODEL --jobs 0` does.",
        "",
        "| model | analysis (s) | process, imports included (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {model} | {m.inner or 0:.2f} | {m.seconds:.2f} | {m.peak_mb:.0f} |" for model, m in per_model.items()
    ]
    lines += [
        "",
        "## The walk-through's approach against reportgen, same model, same run",
        "",
        "The walk-through's approach here is: materialise the fp32 model from its config with transformers'",
        "own initialisation and count per module type (no download, which the walk-through also pays for).",
        "",
        "| model | walk-through (s) | peak RSS (MB) | reportgen (s) | peak RSS (MB) | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for model, walk in walkthrough.items():
        ours = per_model[model]
        lines.append(
            f"| {model} | {walk.seconds:.2f} | {walk.peak_mb:.0f} | {ours.seconds:.2f} | {ours.peak_mb:.0f} | "
            f"{walk.seconds / ours.seconds:.1f}x |"
        )
    lines += [
        "",
        "## Whole catalog, end to end (`reportgen report`)",
        "",
        "| run | time (s) | CPU (s) | peak RSS (MB) |",
        "|---|---:|---:|---:|",
        f"| without merge checks, `--jobs 0` (one process per core) | {catalog_fast.seconds:.1f} | "
        f"{catalog_fast.cpu:.1f} | {catalog_fast.peak_mb:.0f} |",
        f"| without merge checks, one process | {catalog_serial.seconds:.1f} | {catalog_serial.cpu:.1f} | "
        f"{catalog_serial.peak_mb:.0f} |",
        f"| with merge checks, one process (default budget; the cache's cold run) | {catalog_merge.seconds:.1f} | "
        f"{catalog_merge.cpu:.1f} | {catalog_merge.peak_mb:.0f} |",
        "",
    ]
    lines += cache_lines(cached, len(ids))
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
