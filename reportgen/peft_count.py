"""PEFT: count every cell again with PEFT itself, on the meta model, and keep its own words."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
import io
import warnings
from collections.abc import Callable, Iterator

from typing import Any

from peft import IA3Config, LoHaConfig, LoKrConfig, LoraConfig, PeftConfig, PeftModel, VeraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from torch import nn
from transformers import PreTrainedModel
from transformers.initialization import no_init_weights

from . import data
from .analyse import Analysis
from .build import Built
from .data import REFERENCE, SEED_SCENARIOS, Cell, PeftReference
from .errors import one_line
from .methods import Plan, default_alpha, formula_cell, full_key, name_matches
from .variants import ALL_LINEAR, BUILTIN_VARIANTS, LOHA, LOKR, LORA, PARAM_KINDS, VERA, Variant


def peft_config(variant: Variant, plan: Plan, rank: int, dropout: float = 0.0, alpha: float | None = None) -> PeftConfig:
    """The PEFT config a user would write for this cell: all-linear as PEFT's own shorthand, else the names."""
    # PEFT works out all-linear itself (experts included on MoE models), and its own v5 MoE
    # conversion of the names: the check must not do either for PEFT.
    target_modules: str | list[str] = ALL_LINEAR if plan.all_linear else list(plan.modules)
    parameters = [] if plan.all_linear else list(plan.parameters)
    options = dict(variant.options)
    shared: dict[str, Any] = {
        # [] rather than None: with None, PEFT fills in its default targets for the model type.
        "target_modules": target_modules if target_modules or parameters else None,
        "modules_to_save": list(options["modules_to_save"]) if options.get("modules_to_save") else None,
        "task_type": "CAUSAL_LM",
    }
    if options.get("layers_to_transform") is not None:
        shared["layers_to_transform"] = options["layers_to_transform"]
    # PEFT edits rank_pattern/alpha_pattern in place (v5 MoE conversion), so it gets copies.
    patterns: dict[str, Any] = {"rank_pattern": dict(options.get("rank_pattern") or {}),
                                "alpha_pattern": dict(options.get("alpha_pattern") or {})}
    chosen_alpha: Any = alpha if alpha is not None else default_alpha(variant, rank)  # PEFT types it int; floats work
    if variant.method == LORA:
        lora_options = {key: options[key] for key in ("use_dora", "use_rslora", "lora_bias", "bias") if key in options}
        return LoraConfig(r=rank, lora_alpha=chosen_alpha,
                          target_parameters=parameters or None, lora_dropout=dropout, **patterns,
                          **lora_options, **shared)
    if variant.method in (LOHA, LOKR):
        config_class = LoHaConfig if variant.method == LOHA else LoKrConfig
        return config_class(r=rank, alpha=chosen_alpha, **patterns, **shared)
    if variant.method == VERA:
        return VeraConfig(r=rank, bias=options.get("bias", "none"), **shared)
    # IA3's feed-forward layers (scaled on their input): of the names PEFT is given, those reaching a down projection.
    down = [full_key(row, i) for row, layers in zip(plan.rows, plan.layers) if row.role == "down" for i in layers]
    feedforward = ([row.peft_target for row in plan.rows if row.role == "down"] if plan.all_linear
                   else [name for name in plan.modules if any(name_matches(key, [name]) for key in down)])
    return IA3Config(feedforward_modules=feedforward, **shared)


# PEFT's words when its name matching reaches no module (NoMatchingPeftModuleError).
MATCHED_NOTHING = ("not found in the base model", "No modules were targeted", "no parameter was matched")


class PeftRefusal(Exception):
    """PEFT refused a config on this model; the message is PEFT's own, in one line."""


@contextlib.contextmanager
def adapted(model: PreTrainedModel, config: PeftConfig) -> Iterator[PeftModel]:
    """The model wrapped by PEFT for the duration of the block, then unwrapped again.

    The meta model is built once per model and reused: every PEFT layer is put
    back to the module it wraps afterwards (also when PEFT refuses the config
    half-way, which raises PeftRefusal), and the block raises if the model is
    then not exactly the one it was (the same parameter objects under the same names).
    """
    if not hasattr(model, "prepare_inputs_for_generation"):
        config.task_type = None  # a base model (AutoModel fallback) has no causal-LM wrapper in PEFT
    before = dict(model.named_parameters())
    # LoRA's adapter weights live on the meta device, so their random initialisation is wasted work:
    # transformers' no_init_weights skips it (counts and structure unchanged). Not for the other
    # methods: VeRA, for one, uses what its init functions return. Casting the adapter weights to
    # float32 (autocast_adapter_dtype) changes no count either, and costs a walk over every module.
    skip_init = no_init_weights() if isinstance(config, LoraConfig) else contextlib.nullcontext()
    try:
        with warnings.catch_warnings(), skip_init:
            warnings.simplefilter("ignore")
            try:
                peft_model = get_peft_model(model, config, low_cpu_mem_usage=True, autocast_adapter_dtype=False)
            except (ValueError, TypeError, NotImplementedError) as exc:  # how PEFT refuses a config
                raise PeftRefusal(one_line(str(exc)) or type(exc).__name__) from exc
        yield peft_model
    finally:
        _unwrap(model)
        if hasattr(model, "peft_config"):
            del model.peft_config
        after = dict(model.named_parameters())
        if after.keys() != before.keys() or any(after[name] is not param for name, param in before.items()):
            raise AssertionError(f"the meta model was not restored after PEFT's {type(config).__name__}")
        for param in after.values():
            param.requires_grad_(True)


def _unwrap(parent: nn.Module) -> None:
    """Put back, under parent, every module PEFT wrapped, as it was before.

    Not PEFT's unload(): it visits every module of the model and looks each one up
    again from the root (over a quarter of the time of a count), and it hands back
    the trained copy of a modules_to_save module, which unties a tied lm_head from
    the embeddings. Here each PEFT layer gives back its base layer, and each
    modules_to_save wrapper its original module.
    """
    for name, child in list(parent.named_children()):
        original = child
        while isinstance(original, (AuxiliaryTrainingWrapper, BaseTunerLayer)):
            original = (original.original_module if isinstance(original, AuxiliaryTrainingWrapper)
                        else original.get_base_layer())
        if original is not child:
            setattr(parent, name, original)
        _unwrap(original)  # a wrapped module's own children may be wrapped too (a ParamWrapper over a block)


def count_cell(
    model: PreTrainedModel, cell: Cell, plan: Plan, variant: Variant, counted: int | None = None
) -> Cell:
    """The cell with PEFT's trainable count beside the formula's, and its status.

    ``counted`` is PEFT's count from a run that already applied this very config
    (the walk-through's reference step), so PEFT is not asked twice.
    """
    if cell.formula_trainable is None:
        return cell
    trainable = counted
    if trainable is None:
        try:
            with adapted(model, peft_config(variant, plan, cell.rank)) as peft_model:
                trainable, _ = peft_model.get_nb_trainable_parameters()
        except PeftRefusal as refusal:
            if any(words in str(refusal) for words in MATCHED_NOTHING):
                # The closed form adapts layers PEFT's own matching does not find: a disagreement, not a refusal.
                return dataclasses.replace(cell, peft_trainable=0, status=data.MISMATCH, note=(
                    f"MISMATCH: PEFT adapts nothing here ({refusal}), the closed form gives {cell.formula_trainable:,}"))
            return dataclasses.replace(
                cell, formula_trainable=None, percent_of_targeted=None, percent_of_model=None, matrices=0,
                targeted_params=0, formula="", parts=(),
                status=data.NOT_APPLICABLE, note=f"not applicable: PEFT refuses this cell: {refusal}")
    status = data.OK if trainable == cell.formula_trainable else data.MISMATCH
    note = cell.note
    if status == data.MISMATCH:
        note = (
            f"MISMATCH: PEFT trains {trainable:,} parameters, the closed form gives "
            f"{cell.formula_trainable:,} (difference {trainable - cell.formula_trainable:+,})"
        )
    return dataclasses.replace(cell, peft_trainable=trainable, status=status, note=note)


# One model's cells to count, handed to forked workers by inheritance (a meta model does not pickle cheaply).
_SHARED: tuple[PreTrainedModel, list[tuple[Cell, Plan, Variant, int | None]]] | None = None


def count_cells(
    model: PreTrainedModel,
    todo: list[tuple[Cell, Plan, Variant, int | None]],
    workers: int = 1,
    on_cell: Callable[[], object] = lambda: None,
) -> list[Cell]:
    """count_cell for every (cell, plan, variant, counted), in order; on ``workers`` forked processes if > 1.

    Each worker is a fork of this process, with its own copy of the meta model
    for PEFT to wrap; only the counted cells travel back.
    """
    if workers <= 1 or len(todo) <= 1:
        counted = []
        for job in todo:
            counted.append(count_cell(model, *job))
            on_cell()
        return counted
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _SHARED
    _SHARED = (model, todo)
    try:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = {pool.submit(_count_shared, index): index for index in range(len(todo))}
            results: dict[int, Cell] = {}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                on_cell()
    finally:
        _SHARED = None
    return [results[index] for index in range(len(todo))]


def _count_shared(index: int) -> Cell:
    """In a forked worker: count one of the cells count_cells shared."""
    assert _SHARED is not None, "count_cells shares its cells before it forks"
    model, todo = _SHARED
    return count_cell(model, *todo[index])


def reference_step(model: PreTrainedModel, plan: Plan) -> tuple[PeftReference, str]:
    """The walk-through's PEFT step on this model: PEFT's summary line and the wrapped printout."""
    experts = any(row.kind in PARAM_KINDS for row in plan.rows)
    # PEFT refuses dropout on fused expert parameters.
    dropout = 0.0 if experts else REFERENCE.dropout
    config = peft_config(BUILTIN_VARIANTS[REFERENCE.method], plan, REFERENCE.rank, dropout=dropout, alpha=REFERENCE.alpha)
    with adapted(model, config) as peft_model:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            peft_model.print_trainable_parameters()
        trainable, all_params = peft_model.get_nb_trainable_parameters()
        printout = repr(peft_model)
    targets = ALL_LINEAR if plan.all_linear else ", ".join(sorted(plan.modules + plan.parameters))
    description = (
        f"LoraConfig(r={REFERENCE.rank}, lora_alpha={REFERENCE.alpha}, target_modules=[{targets}], "
        f"lora_dropout={dropout}, bias=\"none\", task_type=\"CAUSAL_LM\")"
    )
    reference = PeftReference(
        config=description,
        summary_line=printed.getvalue().strip(),
        trainable_params=trainable,
        all_params=all_params,
    )
    return reference, printout


@dataclass(frozen=True)
class Counted:
    """The count stage's hand-off: every cell, counted by the closed form and by PEFT, and the walk-through's step."""

    cells: tuple[Cell, ...]
    reference: PeftReference | None  # PEFT's own summary for the reference LoraConfig (None: PEFT refused it)
    reference_plan: Plan  # what the reference config adapts (the merge check adapts the same)
    printout: str  # the PEFT-wrapped model as PEFT prints it
    plans: tuple[Plan, ...] = ()  # each cell's plan, in the order of cells: the rows it adapts


def count(
    built: Built,
    analysis: Analysis,
    ranks: tuple[int, ...],
    variants: tuple[Variant, ...],
    workers: int = 1,
    on_cell: Callable[[], object] = lambda: None,
) -> Counted:
    """Every (variant, scenario, rank) cell by the closed form, then by PEFT; the reference step asked once."""
    model, reachable, facts = built.model, analysis.reachable, analysis.facts
    # The walk-through's PEFT step targets q, k, v and o at r=16 (lora_alpha 32 = 2r, as every cell).
    qkvo = next(scenario for scenario in SEED_SCENARIOS if scenario.name == REFERENCE.scenario)
    lora = BUILTIN_VARIANTS[REFERENCE.method]
    _, reference_plan = formula_cell(qkvo, REFERENCE.rank, lora, reachable, facts)
    reference, printout = None, ""
    if reference_plan.rows and not reference_plan.reason:
        with contextlib.suppress(PeftRefusal):  # then its cell says why, counted like any other
            reference, printout = reference_step(model, reference_plan)
    # One meta model serves every cell: PEFT wraps it, counts, and it is restored.
    todo = []
    for variant in variants:
        for scenario in analysis.scenarios:
            for rank in ranks:
                cell, plan = formula_cell(scenario, rank, variant, reachable, facts)
                # The reference step is PEFT applied to this same cell (its dropout adds no parameter).
                same = (scenario, rank, variant) == (qkvo, REFERENCE.rank, lora)
                counted = reference.trainable_params if same and reference is not None else None
                todo.append((cell, plan, variant, counted))
    cells = count_cells(model, todo, workers, on_cell)
    return Counted(tuple(cells), reference, reference_plan, printout, tuple(plan for _, plan, _, _ in todo))
