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
from .errors import OutputBusy, ReportgenError, UsageError
from .memory_data import ADAPTER_DTYPES, ATTENTIONS, FULL_PRECISIONS

RANK = re.compile(r"^[0-9]+$")  # ASCII digits only: str.isdigit() also accepts "²"
SCENARIO = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)=(?P<targets>[^=]+)$")


def _positive_integers(value: str, problem: str) -> tuple[int, ...]:
    """Comma-separated positive integers, each once, in order; ``problem`` says what a bad one is not."""
    numbers: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not RANK.match(part) or int(part) < 1:
            raise click.BadParameter(f"{part!r} is not {problem}")
        if int(part) not in numbers:
            numbers.append(int(part))
    return tuple(numbers)


def _ranks(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    return _positive_integers(value, "a positive integer (example: --ranks 4,8,16,64)")


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
MEMORY_OPTIONS = ("seq_len", "batch_size", "grad_checkpointing", "optimizer", "base_dtype", "attention",
                  "adapter_dtype", "full_precision", "lora_dropout", "double_quant", "bnb_keeps_inputs",
                  "prepare_kbit", "gpu_sizes_gib", "headroom_gib", "scenario", "rank")


def _gpu_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    return _positive_integers(value, "a whole number of GiB (example: --gpu-memory 24,48,80)")


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
                     help="adamw: torch's AdamW, m and v like each parameter (fp32 for fp32 adapters); adamw-8bit: "
                          "block-wise 8-bit; paged-*: bitsandbytes' paged optimizers (states outside PyTorch's "
                          "allocator)."),
        click.option("--base-dtype", type=click.Choice(BASE_DTYPES), default=d.base_dtype, show_default=True,
                     help="Frozen base weights of full and lora (qlora is always NF4, embeddings and head 16-bit)."),
        click.option("--attention", type=click.Choice(ATTENTIONS), default=d.attention, show_default=True,
                     help="sdpa: transformers' default, keeps no s x s scores; eager: keeps them."),
        click.option("--adapter-dtype", type=click.Choice(ADAPTER_DTYPES), default=d.adapter_dtype,
                     show_default=True,
                     help="fp32: PEFT's default (16-bit adapters upcast, inputs cast to fp32); base: adapters in "
                          "the base dtype (litgpt's bf16-true)."),
        click.option("--full-precision", type=click.Choice(FULL_PRECISIONS), default=d.full_precision,
                     show_default=True,
                     help="Full fine-tuning: mixed (fp32 master copy and AdamW states, 16 bytes per parameter) "
                          "or bf16 (weights, gradients and states in bf16, as litgpt and torchtune; 8 bytes)."),
        click.option("--lora-dropout", type=click.FloatRange(min=0, max=1, max_open=True), default=d.lora_dropout,
                     show_default=True,
                     help="LoRA dropout of the trained adapters (memory only: a dropped copy of each adapted "
                          "module's input and its mask are kept)."),
        click.option("--double-quant/--no-double-quant", default=d.double_quant, show_default=True,
                     help="qlora: on (the QLoRA paper's recipe), the NF4 absmax constants in 8 bits plus one fp32 "
                          "constant per 256; off (transformers' BitsAndBytesConfig default, litgpt's bnb.nf4), one "
                          "fp32 absmax per 64 weights."),
        click.option("--bnb-keeps-inputs", is_flag=True, default=d.bnb_keeps_inputs,
                     help="qlora under bitsandbytes before 0.43.2, which kept every 4-bit Linear's input for the "
                          "backward (0.43.2 and later keep none)."),
        click.option("--prepare-kbit", is_flag=True, default=d.prepare_kbit,
                     help="qlora after PEFT's prepare_model_for_kbit_training (its QLoRA recipe): embeddings, head "
                          "and norms upcast to fp32, and with them the hidden states and activations."),
        click.option("--memory-scenario", "scenario", default=d.scenario, show_default=True, metavar="NAME",
                     help="The scenario of the headline memory rows (the table and the chart)."),
        click.option("--memory-rank", "rank", type=click.IntRange(min=1), default=None, metavar="R",
                     help="The rank of the headline memory rows [default: the study's largest]."),
        click.option("--gpu-memory", "gpu_sizes_gib", default=",".join(map(str, d.gpu_sizes_gib)),
                     show_default=True, callback=_gpu_sizes, metavar="GIB[,GIB]",
                     help="GPU sizes in GiB (2^30 bytes) for the fit marks and the chart's lines."),
        click.option("--gpu-headroom", "headroom_gib", type=click.FloatRange(min=0), default=d.headroom_gib,
                     show_default=True, metavar="GIB",
                     help="GiB a row must leave free on a GPU to count as fitting (CUDA context, fragmentation)."),
    ]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in MEMORY_OPTIONS}
        return func(*args, memory=MemoryAssumptions(**values), **kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


cache_dir_option = click.option(
    "--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None, envvar="REPORTGEN_CACHE_DIR",
    show_envvar=True, help="The result cache [default: $XDG_CACHE_HOME/reportgen, else ~/.cache/reportgen]; "
                           "never inside the output folder.")


def cache_options(func: Any) -> Any:
    """Where the result cache lives, and the switch that bypasses it."""
    options = [
        cache_dir_option,
        click.option("--no-cache", is_flag=True,
                     help="Recompute every model, and leave the cache as it is."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _study_matrix(ranks: tuple[int, ...], methods: str | None, matrix_file: Path | None,
                  scenarios: tuple[Scenario, ...], memory: MemoryAssumptions, quiet: bool = False) -> dict[str, Any]:
    """Study keyword arguments from the matrix file (or the default matrix) and the command-line overrides.

    The headline memory rows' rank (--memory-rank) must be a rank of the study.
    """
    from .matrix import Matrix, load_matrix
    from .variants import parse_methods

    matrix = load_matrix(matrix_file) if matrix_file is not None else Matrix()
    variants = parse_methods(methods) if methods else matrix.variants
    names = [scenario.name for scenario in (*SEED_SCENARIOS, *matrix.scenarios, *scenarios)]
    taken = sorted({name for name in names if names.count(name) > 1})
    if taken:
        raise UsageError(f"scenario {', '.join(map(repr, taken))} is named twice (qv_only, qkvo and all_linear "
                         "are built in; a study matrix and --scenario must not repeat a name)")
    if memory.scenario not in names:
        _note(f"--memory-scenario {memory.scenario!r} is not a scenario of the study ({', '.join(dict.fromkeys(names))});"
              " it heads the memory table only of models with a module of that name (a single-module scenario)", quiet)
    ranks = ranks or matrix.ranks
    if memory.rank is not None and memory.rank not in ranks:
        raise UsageError(f"--memory-rank {memory.rank} is not a rank of the study (--ranks {','.join(map(str, ranks))})")
    return {"ranks": ranks, "variants": variants, "scenarios": matrix.scenarios + scenarios}


# --highlight: models the index's cross-model charts mark and label (its own block, used by `report`).
highlight_option = click.option(
    "--highlight", multiple=True, metavar="MODEL",
    help="A model to mark and label on the index's cross-model charts, as written in the models file; "
         "repeatable. Without it only the largest model and the outliers are labelled.")


def _check_highlight(highlight: tuple[str, ...], specs: list[Any]) -> None:
    """Every --highlight names a line of the models file (a usage error otherwise, before any work)."""
    given = {spec.text for spec in specs}
    unknown = [name for name in highlight if name not in given]
    if unknown:
        raise UsageError(f"--highlight {unknown[0]!r} is not a model of the models file "
                         "(give it as the models file writes it)")


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
@click.option("--wait", is_flag=True,
              help="If another reportgen run is writing to --out, wait for it to end instead of exiting with status 3.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.option("-v", "--verbose", is_flag=True,
              help="Log the time of each stage of each model, and why each model was recomputed.")
@cache_options
@highlight_option
def report(models_file: Path, out: Path, ranks: tuple[int, ...], scenarios: tuple[Scenario, ...],
           methods: str | None, matrix_file: Path | None, trust_remote_code: bool, memory: MemoryAssumptions,
           device: str, merge_budget: float | None, no_merge_check: bool, jobs: int, wait: bool, quiet: bool,
           verbose: bool, cache_dir: Path | None, no_cache: bool, highlight: tuple[str, ...]) -> None:
    """Write the report site (HTML, Markdown, JSON, charts) for every model in a models file.

    The output folder always holds one run: one run writes there at a time,
    each model's folder is replaced whole, the index is written last, and the
    folders and files of models no longer in the models file are removed
    (only files reportgen wrote; your own files there are kept).

    Exit status: 0 when every model succeeded, 1 when any failed (the others are
    still written and the index lists the failure), 2 for a usage error, 3 when
    another run is writing to the output folder (see --wait).

    A model whose config, study, options, library versions and reportgen itself
    are unchanged since a run is served from the result cache (--cache-dir) and
    its pages are not rendered again; --no-cache recomputes everything.

    \b
    Example:
        reportgen report --models models.txt --out reports --ranks 4,8,16,64 \\
            --scenario attn_mlp=q_proj,v_proj,down_proj
    """
    from .cache import ResultCache, check_cache_dir, default_cache_dir
    from .folder import FolderLock, index_last, read_manifest, repair
    from .pipeline import Study
    from .progress import configure_logging, printable, showing, summary_table
    from .render.site import write_index
    from .resolve import read_models_file
    from .reuse import run_with_cache

    configure_logging(sys.stderr, quiet, verbose)
    with _click_errors():  # every usage error before any work
        specs, notes = read_models_file(models_file)
        for line in notes:
            _note(line, quiet)
        _check_highlight(highlight, specs)
        if device == "cuda" and not no_merge_check:
            from .merge import select_device

            select_device(device)
        study = Study(merge_check=not no_merge_check, device=device, trust_remote_code=trust_remote_code,
                      memory=memory, merge_budget=merge_budget,
                      **_study_matrix(ranks, methods, matrix_file, scenarios, memory, quiet))
        cache = None if no_cache else ResultCache(cache_dir or default_cache_dir())
        if cache is not None:
            check_cache_dir(cache.root, out)
    with _interruptible(out), _click_errors(out), FolderLock(out, wait, functools.partial(_note, quiet=quiet)) as lock:
        repair(out)  # what a dead run left half-done, before anything is written
        before = read_manifest(out, lock.dead_run_files)
        with showing(len(specs), sys.stderr, enabled=not quiet and sys.stderr.isatty()) as display:
            # Each model's folder is written by the process that analysed it, as soon as it is done
            # (or from the result cache, when nothing that decides it changed).
            result, used = run_with_cache(specs, study, notes, display.hooks(), jobs or os.cpu_count() or 1,
                                          out, before, cache)
        removed = index_last(out, before, result.files, functools.partial(write_index, result, out, highlight=highlight))
    if not quiet:
        seconds = {spec.text: display.seconds[spec.text] for spec in specs if spec.text in display.seconds}
        click.echo(summary_table(result, seconds, set(used.reused)), nl=False)
        click.echo(f"wrote {len(result.reports)} model report(s) to {out}/ (index: {out / 'index.html'})")
        dropped = sorted({relative.partition("/")[0] for relative in removed if "/" in relative})
        if dropped:
            click.echo(f"removed the reports of {len(dropped)} model folder(s) not in this run's reports: "
                       f"{', '.join(map(printable, dropped))}")
    for failure in result.failures:
        click.echo(f"error: {printable(failure.error)}", err=True)
    sys.exit(0 if result.ok else 1)


def _note(line: str, quiet: bool = False) -> None:
    """A note on standard error, in one printable line."""
    from .progress import printable

    if not quiet:
        click.echo(f"note: {printable(line)}", err=True)


class _Busy(click.ClickException):
    """The output folder is another run's (exit status 3)."""

    exit_code = 3


@contextlib.contextmanager
def _click_errors(out: Path | None = None) -> Iterator[None]:
    """The one place library errors become click errors: a usage error exits 2, the rest 1, each in one line.

    With ``out``, a file that cannot be written is an error naming the output folder.
    """
    try:
        yield
    except UsageError as exc:
        raise click.UsageError(str(exc)) from None
    except OutputBusy as exc:
        raise _Busy(str(exc)) from None
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
                      cell_jobs=jobs or os.cpu_count() or 1, **_study_matrix(ranks, methods, matrix_file, scenarios, memory))
        result = analyse_spec(ModelSpec(text=model, origin="command line"), "inspect", study)
    click.echo(render(result), nl=False)


@cli.group()
def cache() -> None:
    """The result cache: unchanged models are served from it on the next run.

    \b
    Example:
        reportgen cache info
        reportgen cache clear --cache-dir .reportgen-cache
    """


@cache.command("info")
@cache_dir_option
def cache_info(cache_dir: Path | None) -> None:
    """Show where the result cache is, its size and its entries (newest first)."""
    from .cache import ResultCache, default_cache_dir
    from .formatting import human_bytes
    from .progress import printable

    store = ResultCache(cache_dir or default_cache_dir())
    entries = store.entries()
    click.echo(f"cache: {store.root}")
    click.echo(f"size: {human_bytes(store.size())} in {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
    for entry in entries:
        click.echo(f"  {entry.created or '-':25}  {human_bytes(entry.size):>9}  merge check: {entry.merge_device:7}  "
                   f"{printable(entry.model)}")


@cache.command("clear")
@cache_dir_option
def cache_clear(cache_dir: Path | None) -> None:
    """Remove every entry of the result cache (only the files reportgen wrote there)."""
    from .cache import ResultCache, default_cache_dir

    store = ResultCache(cache_dir or default_cache_dir())
    removed = store.clear()
    click.echo(f"removed {removed} entr{'y' if removed == 1 else 'ies'} from {store.root}")


@cli.command()
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--exit-code", is_flag=True,
              help="Exit 1 when anything changed and 0 when nothing did (as git diff --exit-code).")
@click.option("--out", "out_file", type=click.Path(path_type=Path, dir_okay=False), default=None, metavar="FILE",
              help="Write the diff to FILE instead of the standard output.")
@click.option("--format", "output_format", type=click.Choice(["markdown", "json"]), default="markdown",
              show_default=True, help="markdown fits a pull-request comment; json gives the same changes to other tools.")
def diff(old: Path, new: Path, exit_code: bool, out_file: Path | None, output_format: str) -> None:
    """Show what changed between two report folders (OLD and NEW, as `reportgen report` wrote them).

    Models added and removed; changes of status first (a model that failed, a
    new mismatch between the formula and PEFT, a merge check that no longer
    passes); then for each model every changed total, module row, cell, memory
    figure and merge check, old -> new with the difference; and changed ranks,
    scenarios, methods and library versions. Folders of different schema
    versions are compared on the fields both have. The same folders give the
    same bytes.

    Exit status: 0 (with --exit-code: 0 when nothing changed, 1 when anything
    did), 2 when OLD or NEW is not a report folder.

    \b
    Example:
        reportgen diff base-reports reports --out diff.md
        reportgen diff base-reports reports --exit-code --format json
    """
    from .diff import diff_folders
    from .render.diffreport import diff_json, diff_markdown

    with _click_errors():
        result = diff_folders(old, new)
    text = diff_json(result) if output_format == "json" else diff_markdown(result)
    if out_file is None:
        click.echo(text, nl=False)
    else:
        try:
            out_file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"cannot write the diff to {out_file}: {exc}") from None
    sys.exit(1 if exit_code and result.changed else 0)


@cli.command()
@click.argument("reports", type=click.Path(path_type=Path), default=Path("reports"))
@click.option("--site", type=click.Path(path_type=Path, file_okay=False), default=Path("site"), show_default=True,
              help="Folder the site is built into; new, empty, or an earlier site (it is emptied first).")
@click.option("--project", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="Keep the MkDocs project (mkdocs.yml and docs/) in DIR, to serve it (mkdocs serve) or build it "
                   "with Zensical [default: a temporary folder].")
@click.option("--title", default=None, help="The site's name [default: LoRA report].")
@click.option("--site-url", default="", metavar="URL",
              help="Where the site will be published (https://org.github.io/repo/): gives the 404 page and the "
                   "sitemap full addresses. Without it the site works from any address but its 404 page only at a "
                   "host's root.")
def docs(reports: Path, site: Path, project: Path | None, title: str | None, site_url: str) -> None:
    """Build a static docs site (MkDocs, Material theme, strict) from a report folder's Markdown.

    REPORTS is a folder that `reportgen report` wrote [default: reports]. The
    home page is the cross-model table and chart; each model has its page in the
    navigation, with its charts and a link to its self-contained report.html.
    Search runs in the page and no request leaves the site. Needs
    `pip install 'reportgen[docs]'`.

    \b
    Example:
        reportgen report --models models.txt --out reports && reportgen docs reports --site site
        python -m http.server --directory site      # then open http://localhost:8000
    """
    from .docs import DEFAULT_TITLE, build_docs

    with _click_errors():
        built = build_docs(reports, site, project, title or DEFAULT_TITLE, site_url)
    kept = f"; MkDocs project in {built.project}/" if built.project else ""
    click.echo(f"built the docs site for {len(built.pages)} model(s) into {site}/ "
               f"(home page: {site / 'index.html'}{kept})")


def main() -> None:
    """Console-script entry point."""
    cli()
