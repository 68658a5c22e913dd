"""The command line: a thin click layer over the pipeline; the one place errors become exit codes."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .data import BASE_DTYPES, OPTIMIZERS, SEED_SCENARIOS, MemoryAssumptions, Scenario
from .errors import ReportgenError, UsageError

RANK = re.compile(r"^[0-9]+$")  # ASCII digits only: str.isdigit() also accepts "²"
SCENARIO = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<targets>[^=]+)$")


def _ranks(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    ranks: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not RANK.match(part) or int(part) < 1:
            raise click.BadParameter(f"{part!r} is not a positive integer (example: --ranks 4,8,16,64)")
        if int(part) not in ranks:
            ranks.append(int(part))
    return tuple(ranks)


def _scenarios(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[Scenario, ...]:
    scenarios: list[Scenario] = []
    for text in value:
        match = SCENARIO.match(text.strip())
        targets = tuple(t.strip() for t in match.group("targets").split(",")) if match else ()
        if match is None or not all(targets):
            raise click.BadParameter(
                f"{text!r} is not NAME=module[,module...] (example: --scenario attn_mlp=q_proj,v_proj,down_proj)"
            )
        if any(scenario.name == match.group("name") for scenario in scenarios):
            raise click.BadParameter(f"scenario {match.group('name')!r} is given twice")
        scenarios.append(Scenario(match.group("name"), targets, "user scenario"))
    return tuple(scenarios)


jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(min=0), default=1, show_default=True,
    help="Processes to use; 0 means one per CPU core. Models are analysed at once, each in its own "
         "process; a single model's PEFT counts are spread over them instead.")


def study_options(func: Any) -> Any:
    """The options every analysing command shares."""
    options = [
        click.option("--ranks", default=None, callback=_ranks,
                     help="Comma-separated LoRA ranks to study [default: 8,16]."),
        click.option("--scenario", "scenarios", multiple=True, callback=_scenarios, metavar="NAME=MOD[,MOD]",
                     help="An extra targeting scenario; repeatable. MOD is a module name (q_proj), matched as "
                          "PEFT matches names: every module whose name ends with it, in any part of the model; "
                          "else a role of the language model (q, k, v, o, gate, up, down); or all-linear."),
        click.option("--methods", default=None, metavar="NAME[,NAME]",
                     help="Comma-separated methods: lora, dora, rslora, loha, lokr, vera, ia3 [default: lora]."),
        click.option("--matrix", "matrix_file", type=click.Path(path_type=Path), default=None,
                     help="A TOML study matrix (ranks, scenarios, methods and their options); "
                          "--ranks/--methods given on the command line override it."),
        click.option("--trust-remote-code", is_flag=True,
                     help="Allow a config's own Python code (auto_map) to run. Off by default."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


MEMORY_DEFAULTS = MemoryAssumptions()
MEMORY_OPTIONS = ("seq_len", "batch_size", "grad_checkpointing", "optimizer", "base_dtype")


def memory_options(func: Any) -> Any:
    """The training-memory options; the command receives them as one `memory` (MemoryAssumptions)."""
    d = MEMORY_DEFAULTS
    options = [
        click.option("--seq-len", type=click.IntRange(min=1), default=d.seq_len, show_default=True,
                     help="Tokens per sequence for the activation estimate."),
        click.option("--batch-size", type=click.IntRange(min=1), default=d.batch_size, show_default=True,
                     help="Sequences per micro-batch on one GPU."),
        click.option("--grad-checkpointing/--no-grad-checkpointing", default=d.grad_checkpointing,
                     show_default=True, help="Recompute each layer in the backward pass (keeps layer inputs only)."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=d.optimizer, show_default=True,
                     help="adamw: fp32 m and v (8 bytes per trainable parameter); adamw-8bit: block-wise 8-bit."),
        click.option("--base-dtype", type=click.Choice(BASE_DTYPES), default=d.base_dtype, show_default=True,
                     help="Frozen base weights of full and lora (qlora is always NF4, embeddings and head 16-bit)."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in MEMORY_OPTIONS}
        return func(*args, memory=MemoryAssumptions(**values), **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _study_matrix(ranks: tuple[int, ...], methods: str | None, matrix_file: Path | None,
                  scenarios: tuple[Scenario, ...]) -> dict[str, Any]:
    """Study keyword arguments from the matrix file (or the default matrix) and the command-line overrides."""
    from .matrix import Matrix, load_matrix
    from .variants import parse_methods

    matrix = load_matrix(matrix_file) if matrix_file is not None else Matrix()
    variants = parse_methods(methods) if methods else matrix.variants
    names = [scenario.name for scenario in (*SEED_SCENARIOS, *matrix.scenarios, *scenarios)]
    taken = sorted({name for name in names if names.count(name) > 1})
    if taken:
        raise UsageError(f"scenario {', '.join(map(repr, taken))} is named twice (qv_only, qkvo and all_linear "
                         "are built in; a study matrix and --scenario must not repeat a name)")
    return {"ranks": ranks or matrix.ranks, "variants": variants, "scenarios": matrix.scenarios + scenarios}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="reportgen")
def cli() -> None:
    """What LoRA at rank r on these modules trains, for any causal LM, counted twice.

    reportgen builds each model from its config on the meta device (no weights
    are downloaded or materialised), counts every module type, computes the LoRA
    trainables of every scenario and rank by formula and again with PEFT, and
    writes a static report site.

    \b
    Example:
        reportgen report --models models.txt --out reports
        reportgen inspect meta-llama/Llama-3.2-1B-Instruct
    """


@cli.command()
@click.option("--models", "models_file", required=True, type=click.Path(path_type=Path),
              help="File with one model per line: a hub id (org/name[@rev]), a model folder or a config.json.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports"), show_default=True,
              help="Output folder; reportgen replaces its own files there and leaves the rest alone.")
@study_options
@memory_options
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the merge check runs.")
@click.option("--merge-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="GIB",
              help="Memory the merge checks of the whole run may use, in GiB (2^30 bytes) [default: 8 on CPU, half "
                   "the GPU's memory on CUDA]; with --jobs a model's check waits until its share is free. A model "
                   "over it is checked as a replica (every kind of layer at full width, fewer layers, experts and "
                   "tokens), one replica per kind of layer, or skipped when even that is over.")
@click.option("--no-merge-check", is_flag=True, help="Skip the merge_and_unload check on real tensors.")
@jobs_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log the time of each stage of each model.")
def report(models_file: Path, out: Path, ranks: tuple[int, ...], scenarios: tuple[Scenario, ...],
           methods: str | None, matrix_file: Path | None, trust_remote_code: bool, memory: MemoryAssumptions,
           device: str, merge_budget: float | None, no_merge_check: bool, jobs: int, quiet: bool,
           verbose: bool) -> None:
    """Write the report site (HTML, Markdown, JSON, charts) for every model in a models file.

    Exit status: 0 when every model succeeded, 1 when any failed (the others are
    still written and the index lists the failure), 2 for a usage error.

    \b
    Example:
        reportgen report --models models.txt --out reports --ranks 4,8,16,64 \\
            --scenario attn_mlp=q_proj,v_proj,down_proj
    """
    from .output import remove_stale_temporaries
    from .pipeline import Study, run
    from .progress import configure_logging, printable, showing, summary_table
    from .render.site import write_index, write_model
    from .resolve import read_models_file

    configure_logging(sys.stderr, quiet, verbose)
    with _click_errors():  # every usage error before any work
        specs, notes = read_models_file(models_file)
        for note in notes:
            click.echo(f"note: {printable(note)}", err=True)
        if device == "cuda" and not no_merge_check:
            from .merge import select_device

            select_device(device)
        study = Study(merge_check=not no_merge_check, device=device, trust_remote_code=trust_remote_code,
                      memory=memory, merge_budget=merge_budget,
                      **_study_matrix(ranks, methods, matrix_file, scenarios))
    with _interruptible(out), _click_errors(out):
        remove_stale_temporaries(out, older_than=time.time())
        with showing(len(specs), sys.stderr, enabled=not quiet and sys.stderr.isatty()) as display:
            # Each model's folder is written by the process that analysed it, as soon as it is done.
            result = run(specs, study, notes, display.hooks(), jobs=jobs or os.cpu_count() or 1,
                         finish=functools.partial(write_model, out=out))
        write_index(result, out)
    if not quiet:
        click.echo(summary_table(result, display.seconds), nl=False)
        click.echo(f"wrote {len(result.reports)} model report(s) to {out}/ (index: {out / 'index.html'})")
    for failure in result.failures:
        click.echo(f"error: {printable(failure.error)}", err=True)
    sys.exit(0 if result.ok else 1)


@contextlib.contextmanager
def _click_errors(out: Path | None = None) -> Iterator[None]:
    """The one place library errors become click errors: a usage error exits 2, the rest 1, each in one line.

    With ``out``, a file that cannot be written is an error naming the output folder.
    """
    try:
        yield
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except ReportgenError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        if out is None:
            raise
        raise click.ClickException(f"cannot write the report to {out}: {exc}") from None


@contextlib.contextmanager
def _interruptible(out: Path) -> Iterator[None]:
    """Ctrl-C or SIGTERM: stop cleanly with exit status 130; files already written stay whole."""
    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: every file in {out}/ is left whole, as it was or as this run wrote it",
                   err=True)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli.command()
@click.argument("model")
@study_options
@memory_options
@jobs_option
def inspect(model: str, ranks: tuple[int, ...], scenarios: tuple[Scenario, ...], methods: str | None,
            matrix_file: Path | None, trust_remote_code: bool, memory: MemoryAssumptions, jobs: int) -> None:
    """Print one model's module table, LoRA cells, PEFT check and training memory in the terminal.

    MODEL is a hub id (bundled ones work offline), a model folder or a config.json.

    \b
    Example:
        reportgen inspect meta-llama/Llama-3.2-1B-Instruct --ranks 8,16
        reportgen inspect meta-llama/Llama-3.1-8B-Instruct --seq-len 4096 --optimizer adamw-8bit
        reportgen inspect openai-community/gpt2 --methods lora,dora,vera --matrix study.toml
        reportgen inspect meta-llama/Llama-3.1-405B --jobs 0
    """
    from .pipeline import Study, analyse_spec
    from .render.terminal import render
    from .resolve import ModelSpec

    with _click_errors():
        study = Study(merge_check=False, trust_remote_code=trust_remote_code, memory=memory,
                      cell_jobs=jobs or os.cpu_count() or 1, **_study_matrix(ranks, methods, matrix_file, scenarios))
        result = analyse_spec(ModelSpec(text=model, origin="command line"), "inspect", study)
    click.echo(render(result), nl=False)


def main() -> None:
    """Console-script entry point."""
    cli()
