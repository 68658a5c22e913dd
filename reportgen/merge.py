"""Merge: ``merge_and_unload()`` verified on real tensors, on CPU or GPU.

The walk-through ends by merging the adapter and printing the merged model; this
stage proves the numbers. It materialises the model with random weights (the
whole model when it fits the memory budget, else a replica with fewer layers and
the same widths, else nothing), applies LoRA with non-zero A and B, runs a fixed
batch through the adapted model, merges, runs the batch again and compares the
logits. It also checks that the merged model has the base model's parameter
count, module classes and tied embeddings, and no LoRA module left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from .budget import reserve
from .build import embeddings_tied, parameter_count
from .data import REFERENCE, MergeCheck, MergeStatus
from .errors import UsageError, one_line
from .formatting import GIB
from .materialise import PatternFill, fixed_batch, materialise
from .merge_plan import BATCH, RUNTIME_BYTES, MergePlan, Replica, describe, plan_materialisation, sizes
from .routing import Routing, base_and_adapted_logits, logits, router_paths, two_pass_logits
from .variants import ALL_LINEAR

# The budget is binary: --merge-budget 8 is 8 GiB (8 * 2^30 bytes), and every message says GiB.
CPU_BUDGET_GIB = 8.0  # fits every bundled model up to ~1.5B whole on a 24 GiB laptop; larger ones as a replica
CUDA_BUDGET_FRACTION = 0.5  # of the GPU's own memory
__all__ = ["BATCH", "RUNTIME_BYTES", "MergePlan", "PatternFill", "check_merge", "materialise", "plan_materialisation"]

# LoRA A and B U(-0.08, 0.08) (see reportgen.materialise for the base weights' fill): scaling * B @ A
# (alpha/r = 2) is as large as the base weight it is added to and moves the logits by far more than the tolerance.
LORA_SCALE = 0.08

# Logit tolerance, relative to the largest adapted logit. fp32: the adapted and
# merged paths round differently (W x + s B A x against (W + s B A) x), a few
# dozen ulps over a deep stack; 1e-4 (~840 ulps) leaves room and still catches a
# wrong merge, which moves the logits by the order of the LoRA effect itself.
# bf16 (not a default, see merge_dtype): the merged weight is rounded to 8 bits
# of mantissa, so a percent-level difference is expected.
RELATIVE_TOLERANCE: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}
# The LoRA must move the logits by at least this many tolerances, or the check proves nothing.
MIN_EFFECT_TOLERANCES = 10.0


Merge = Callable[[PeftModel], nn.Module]


def merge_and_unload(peft_model: PeftModel) -> nn.Module:
    """PEFT's own merge (the default; tests pass a deliberately wrong one)."""
    merged: nn.Module = peft_model.merge_and_unload()
    return merged


def select_device(requested: str) -> str:
    """cpu or cuda for --device auto|cpu|cuda; auto takes CUDA when torch sees one."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here (use --device auto or cpu)")
    if requested not in ("cpu", "cuda"):
        raise UsageError(f"--device {requested}: expected auto, cpu or cuda")
    return requested


def merge_dtype(device: str) -> torch.dtype:
    """fp32 on CPU and on GPU.

    bf16 works for dense models (see RELATIVE_TOLERANCE, and the ``dtype`` seam of
    check_merge), but in a mixture of experts the bf16 rounding of the merged weight
    can flip a router's top-k choice for a token, which moves its logits by far more
    than any rounding tolerance; fp32 keeps the check strict on every family, and a
    GPU has the memory for it (the budget is half of it).
    """
    return torch.float32


@contextlib.contextmanager
def strict_fp32(device: str) -> Iterator[None]:
    """fp32 matmuls in full precision on CUDA (no TF32) for the duration of the block."""
    if device != "cuda":
        yield
        return
    saved = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


def default_budget_bytes(device: str) -> int:
    """The memory the check may use by default: 8 GiB on CPU, half the GPU's memory on CUDA."""
    if device == "cuda":
        return int(torch.cuda.get_device_properties(0).total_memory * CUDA_BUDGET_FRACTION)
    return int(CPU_BUDGET_GIB * GIB)


def _is_tuner(module: nn.Module) -> bool:
    return isinstance(module, BaseTunerLayer)


@contextlib.contextmanager
def _calls(peft_model: PeftModel) -> Iterator[set[str]]:
    """The names of the LoRA layers that run while the block runs."""
    called: set[str] = set()
    handles = [
        module.register_forward_pre_hook(lambda *_, name=name: called.add(name))
        for name, module in peft_model.named_modules() if _is_tuner(module)
    ]
    try:
        yield called
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def _idle_adapters(peft_model: PeftModel, called: set[str]) -> list[str]:
    """LoRA layers the forward pass never ran, their B zeroed: no gradient would ever reach them in training
    (Jamba reads dt_proj.weight directly; a text batch never reaches a vision tower), so a trained adapter
    has B = 0 there, and their merge is a no-op."""
    idle = []
    for name, module in peft_model.named_modules():
        if _is_tuner(module) and name not in called:
            idle.append(name.removeprefix("base_model.model."))
            for param_name, param in module.named_parameters():
                if "lora_B" in param_name:
                    param.zero_()
    return idle


def _refresh_classes(base: _Snapshot, peft_model: PeftModel) -> None:
    """The base classes as the forward pass left them: a model may swap its own modules for a batch
    (BigBird: block-sparse attention becomes full attention for a short one), so like is compared with like."""
    classes: dict[str, type] = {}
    tuners: list[str] = []
    for name, module in peft_model.get_base_model().named_modules():
        if any(name.startswith(f"{tuner}.") for tuner in tuners):
            continue  # the LoRA layer's own parts and the layer it wraps
        if isinstance(module, BaseTunerLayer):
            tuners.append(name)
            for inner, part in module.get_base_layer().named_modules():  # the wrapped module and its parts
                classes[f"{name}.{inner}" if inner else name] = type(part)
            continue
        classes[name] = type(module)
    base.classes.clear()
    base.classes.update(classes)


def module_classes(model: nn.Module) -> dict[str, type]:
    """Every module's class by its name."""
    return {name: type(module) for name, module in model.named_modules()}


@dataclass(frozen=True)
class _Snapshot:
    """The base model's structure before LoRA, to compare the merged model against."""

    params: int
    classes: dict[str, type]
    tied: bool


def structure_problems(merged: nn.Module, base: _Snapshot) -> list[str]:
    """How the merged model differs from the base model's structure (empty when it does not)."""
    problems: list[str] = []
    lora = [name for name, module in merged.named_modules() if isinstance(module, BaseTunerLayer)]
    lora += [name for name, _ in merged.named_parameters() if "lora_" in name]
    if lora:
        problems.append(f"{len(lora)} LoRA module(s) or weight(s) remain (first: {lora[0]})")
    classes = module_classes(merged)
    changed = sorted({name for name, _ in set(classes.items()) ^ set(base.classes.items())})
    if changed:
        name = changed[0]
        problems.append(
            f"{len(changed)} module(s) differ from the base model's classes "
            f"(first: '{name}' is {classes.get(name, type(None)).__name__}, "
            f"was {base.classes.get(name, type(None)).__name__})"
        )
    params = parameter_count(merged)
    if params != base.params:
        problems.append(f"{params:,} parameters after the merge, the base model has {base.params:,}")
    if base.tied and not embeddings_tied(merged):
        problems.append("the tied embeddings are no longer tied")
    return problems


def check_merge(
    config: PretrainedConfig,
    targets: Sequence[str],
    device: str = "auto",
    budget_bytes: int | None = None,
    trust_remote_code: bool = False,
    merge: Merge = merge_and_unload,
    dtype: torch.dtype | None = None,
    parameters: Sequence[str] = (),
    replica: bool = False,
) -> tuple[MergeCheck, str]:
    """The merge check of one model and the merged model's printout ("" when nothing was materialised).

    ``targets`` and ``parameters`` are PEFT's target_modules and target_parameters
    (["all-linear"]: PEFT's own shorthand). ``replica`` checks a replica even when
    the whole model fits. ``merge`` and ``dtype`` are seams for tests: a
    deliberately wrong merge must be reported as failed, and the GPU's bf16 path
    can be exercised on CPU.
    """
    device = select_device(device)
    dtype = dtype or merge_dtype(device)
    budget = default_budget_bytes(device) if budget_bytes is None else budget_bytes
    chosen = plan_materialisation(config, dtype, budget, trust_remote_code, replica)
    dtype_name = str(dtype).removeprefix("torch.")
    if chosen.kind == "skipped":
        return MergeCheck(
            status=MergeStatus.SKIPPED, materialised="nothing", device=device, dtype=dtype_name,
            note=f"skipped: too large for the budget: {sizes(chosen, dtype_name)}",
        ), ""
    lora = _lora_words(targets, parameters)
    checks: list[MergeCheck] = []
    printouts: list[str] = []
    for each in chosen.replicas:
        with reserve(each.needed_bytes):  # with --jobs: waits until the run's shared budget has room
            check, printout = _check_one(chosen, each, targets, parameters, device, dtype, merge, trust_remote_code)
        if len(chosen.replicas) > 1 and check.status == MergeStatus.NOT_APPLICABLE and _matched_nothing(check):
            continue  # this kind of layer has none of the targets (a Mamba layer for q, k, v, o): nothing to merge
        checks.append(dataclasses.replace(check, materialised=describe(chosen, each, lora, dtype_name)))
        printouts.append(printout)
        if check.status != MergeStatus.PASSED:
            break  # the first replica that does not pass is the verdict
    if not checks:
        return MergeCheck(status=MergeStatus.NOT_APPLICABLE, device=device, dtype=dtype_name,
                          note=f"not applicable: no replica has any of the targets ({lora})"), ""
    return _combined(checks), "\n\n".join(p for p in printouts if p)


def _matched_nothing(check: MergeCheck) -> bool:
    """PEFT found none of the targets in this replica (its NoMatchingPeftModuleError)."""
    return any(words in check.note for words in ("not found in the base model", "No modules were targeted",
                                                  "no parameter was matched"))


def _check_one(
    chosen: MergePlan, replica: Replica, targets: Sequence[str], parameters: Sequence[str], device: str,
    dtype: torch.dtype, merge: Merge, trust_remote_code: bool,
) -> tuple[MergeCheck, str]:
    """One materialised model checked; what PEFT refuses is not applicable, anything else that stops it an error."""
    dtype_name = str(dtype).removeprefix("torch.")
    try:
        with strict_fp32(device):
            return _run(chosen, replica, targets, parameters, device, dtype, merge, trust_remote_code)
    except PeftCannot as exc:
        return MergeCheck(
            status=MergeStatus.NOT_APPLICABLE, device=device, dtype=dtype_name, note=f"not applicable: {exc}",
        ), ""
    except (RuntimeError, ValueError, TypeError, NotImplementedError, IndexError, KeyError, AttributeError) as exc:
        # The check did not complete: say so, never call it passed (an out-of-memory error lands here too).
        return MergeCheck(
            status=MergeStatus.ERROR, device=device, dtype=dtype_name,
            note=f"the merge check could not run: {type(exc).__name__}: {one_line(str(exc))}",
        ), ""
    finally:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def _combined(checks: list[MergeCheck]) -> MergeCheck:
    """One check for several replicas: the last one's verdict (the first that did not pass), every one's words."""
    last = checks[-1]
    if len(checks) == 1:
        return last
    diffs = [c.max_abs_diff for c in checks if c.max_abs_diff is not None]
    effects = [c.lora_effect for c in checks if c.lora_effect is not None]
    return dataclasses.replace(
        last,
        materialised=" | ".join(f"{i + 1}) {c.materialised}" for i, c in enumerate(checks)),
        note=" | ".join(f"{i + 1}) {c.note}" for i, c in enumerate(checks)),
        max_abs_diff=max(diffs) if diffs else None,
        lora_effect=min(effects) if effects else None,
    )


# Which verdict wins when the walk-through's pass and the all-linear pass differ.
_SEVERITY = [MergeStatus.FAILED, MergeStatus.ERROR, MergeStatus.NOT_APPLICABLE, MergeStatus.SKIPPED, MergeStatus.PASSED]


def combined_with_all_linear(first: MergeCheck, second: MergeCheck) -> MergeCheck:
    """The walk-through's check with the all-linear pass attached; the status is the worse of the two.

    A pass where PEFT cannot merge something makes the whole check not applicable (with PEFT's reason),
    never passed; a failure or an error in either is the check's.
    """
    ranked = [status for status in _SEVERITY if status in (first.status, second.status)]
    status = ranked[0] if ranked else first.status
    note = first.note
    if second.status != MergeStatus.PASSED or status != first.status:
        said = second.note.removeprefix(f"{second.status_label}: ").removeprefix(f"{second.status}: ")  # once
        note = f"{note}; all-linear pass: {second.status_label}: {said}"
    else:
        note = f"{note}; all-linear pass on a replica: passed too"
    passed = True if status == MergeStatus.PASSED else False if status == MergeStatus.FAILED else None
    return dataclasses.replace(first, status=status, passed=passed, note=note, all_linear=second)


class PeftCannot(Exception):
    """PEFT refused to adapt or merge this model; the message is PEFT's own reason."""


# PEFT's refusal of named modules of a model (LoRA on a Mamba model's out_proj or conv1d), in its words.
INCOMPATIBLE = re.compile(r"Incompatible modules: \{([^}]*)\}")


class PeftRefuses(PeftCannot):
    """PEFT refuses some of the targeted modules of this model; the others can be checked without them."""

    def __init__(self, modules: list[str], reason: str) -> None:
        super().__init__(reason)
        self.modules, self.reason = modules, reason


def _run(
    chosen: MergePlan, replica: Replica, targets: Sequence[str], parameters: Sequence[str], device: str,
    dtype: torch.dtype, merge: Merge, trust_remote_code: bool,
) -> tuple[MergeCheck, str]:
    """Materialise, adapt, merge, compare: the check itself."""
    filler = PatternFill(device, dtype)
    model = materialise(chosen.config, device, dtype, filler, trust_remote_code, replica.keep)
    base = _Snapshot(parameter_count(model), module_classes(model), embeddings_tied(model))
    ids = fixed_batch(chosen.vocab_size, device)
    routing = Routing(router_paths(model))  # fixed routing: see reportgen.routing
    # The model is rebuilt after the except block: inside it the traceback's frames still hold the first model.
    refusal: tuple[list[str], str] | None = None
    try:
        peft_model, refused = _adapt(model, targets, parameters, filler), ""
    except PeftRefuses as exc:
        refusal = exc.modules, exc.reason
    if refusal is not None:
        # Built afresh (PEFT wraps modules in place before it refuses one), the refused ones left out; the first
        # model freed before the second is made, so the check stays within its share of the budget.
        names, reason = refusal
        left_out = _targeted(model, targets, names)
        del model
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
        filler = PatternFill(device, dtype)
        model = materialise(chosen.config, device, dtype, filler, trust_remote_code, replica.keep)
        routing = Routing(router_paths(model))
        peft_model = _adapt(model, targets, parameters, filler, names)
        refused = (f"; PEFT refuses LoRA on {', '.join(left_out)} of this model, so "
                   f"{'it is' if len(left_out) == 1 else 'they are'} left out ({reason})")
    with _calls(peft_model) as called, _peft_forward_fails(peft_model):
        before, adapted = base_and_adapted_logits(peft_model, ids, routing)
    idle = _idle_adapters(peft_model, called)
    if idle or not (adapted - before).abs().max().item() > 0:
        # PEFT's mixed batch splits on the first axis: a model that runs sequence-first (XLNet) or that
        # folds the batch (MPT) gets one adapter for both halves. The base pass then runs on its own.
        before, adapted = two_pass_logits(peft_model, ids, routing)
    _refresh_classes(base, peft_model)
    try:
        merged = merge(peft_model)
    except (ValueError, NotImplementedError) as exc:
        if merge is merge_and_unload:
            raise PeftCannot(f"PEFT cannot merge this adapter: {type(exc).__name__}: {one_line(str(exc))}") from None
        raise
    with routing.replay(merged):
        after = logits(merged, torch.cat([ids, ids]))[len(ids):]  # the same batch shape as the adapted pass
    scale = max(adapted.abs().max().item(), 1e-30)
    tolerance = RELATIVE_TOLERANCE[dtype] * scale
    diff = (after - adapted).abs().max().item()
    effect = (adapted - before).abs().max().item()
    problems = structure_problems(merged, base)
    if not diff <= tolerance:  # also catches NaN
        problems.insert(0, f"merged logits differ from the adapted ones by {diff:.3g} > tolerance {tolerance:.3g}")
    if not routing.relative_diff <= RELATIVE_TOLERANCE[dtype]:
        problems.insert(0, f"a merged router's output differs from the adapted one by {routing.relative_diff:.3g} "
                           f"of its scale > {RELATIVE_TOLERANCE[dtype]:g}")
    if not effect >= MIN_EFFECT_TOLERANCES * tolerance:
        problems.append(f"the LoRA moved the logits by only {effect:.3g}, too little for the check to prove anything")
    dtype_name = str(dtype).removeprefix("torch.")
    check = MergeCheck(
        status=MergeStatus.FAILED if problems else MergeStatus.PASSED,
        passed=not problems,
        max_abs_diff=diff,
        tolerance=tolerance,
        device=device,
        dtype=dtype_name,
        params_after_merge=parameter_count(merged),
        lora_effect=effect,
        note="; ".join(problems) if problems else (
            f"merged logits equal the adapted ones within {RELATIVE_TOLERANCE[dtype]:g} of the largest logit "
            f"({scale:.3g}); the LoRA itself moved them by {effect:.3g}; parameters, module classes"
            f"{' and tied embeddings' if base.tied else ''} are the base model's again, no LoRA module remains"
            + (f"; {len(idle)} adapted module(s) never ran in the forward pass (first: {idle[0]}; the model "
               "reads their weight directly or the batch does not reach them): their B is zero, as training "
               "would leave it" if idle else "")
            + (f"; routing fixed to the adapted pass's ({len(routing.paths)} router(s), whose merged outputs agree "
               f"within {routing.relative_diff:.2g} of their scale)" if routing.paths else "")
            + refused
        ),
    )
    return check, repr(merged)


def _adapt(model: PreTrainedModel, targets: Sequence[str], parameters: Sequence[str], filler: PatternFill,
           refused: Sequence[str] = ()) -> PeftModel:
    """The model wrapped by PEFT (in place, no copy of the base weights) with non-zero A and B.

    ``refused``: module names PEFT refuses for this model, left out (PEFT's exclude_modules).
    """
    target_modules: str | list[str] = (ALL_LINEAR if list(targets) == [ALL_LINEAR]
                                       else [target for target in targets if target not in refused])
    config = LoraConfig(
        r=REFERENCE.rank, lora_alpha=REFERENCE.alpha, target_modules=target_modules, lora_dropout=0.0, bias="none",
        target_parameters=list(parameters) or None, task_type="CAUSAL_LM", exclude_modules=list(refused) or None,
        init_lora_weights=False,  # PEFT's default zeroes B, which would make the check vacuous; filled below
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = get_peft_model(model, config)
    except (ValueError, NotImplementedError) as exc:
        message = one_line(str(exc))  # PEFT's printed set of names sorted there: the same words every run
        incompatible = INCOMPATIBLE.search(message)
        names = re.findall(r"'([^']+)'", incompatible.group(1)) if incompatible and not refused else []
        if names and (target_modules == ALL_LINEAR or set(target_modules) - set(names)):
            raise PeftRefuses(names, message.split(". Please")[0]) from None
        raise PeftCannot(f"PEFT cannot adapt this model so: {type(exc).__name__}: {message}") from None
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            filler.fill(param.data, LORA_SCALE)
    peft_model.eval()
    return peft_model


@contextlib.contextmanager
def _peft_forward_fails(peft_model: PeftModel) -> Iterator[None]:
    """An error raised inside PEFT's own LoRA layer is PEFT's limit, not the check's: not applicable, with the
    layers it wrapped that are subclasses of nn.Linear with a forward of their own (Phi-MoE's and Llama 4's
    routers return a tuple, which PEFT's LoRA Linear cannot add its delta to; PEFT's all-linear picks them
    because it selects by isinstance(module, nn.Linear))."""
    try:
        yield
    except (AttributeError, TypeError, RuntimeError) as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        if not frames or "/peft/tuners/" not in frames[-1].filename.replace("\\", "/") or "out of memory" in str(exc):
            raise
        odd = sorted({f"{name.removeprefix('base_model.model.')} ({type(module.get_base_layer()).__name__})"
                      for name, module in peft_model.named_modules()
                      if isinstance(module, BaseTunerLayer) and _own_forward_linear(module.get_base_layer())})
        if not odd:  # nothing PEFT wrapped that it could not: the check's own error
            raise
        wrapped = f" on {odd[0]}{f' and {len(odd) - 1} more' if len(odd) > 1 else ''}"
        raise PeftCannot(f"PEFT's LoRA layer fails in the forward pass{wrapped}, an nn.Linear subclass whose forward "
                         f"PEFT cannot wrap: {type(exc).__name__}: {one_line(str(exc))}") from None


def _own_forward_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and type(module).forward is not nn.Linear.forward


def _targeted(model: nn.Module, targets: Sequence[str], names: Sequence[str]) -> list[str]:
    """Of the module names PEFT refuses, those the targets reach in this model (all-linear: its nn.Linear leaves)."""
    if list(targets) == [ALL_LINEAR]:
        leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
        return [name for name in names if name in leaves] or list(names)
    return [name for name in names if name in targets] or list(names)


def _lora_words(targets: Sequence[str], parameters: Sequence[str]) -> str:
    """'LoRA r=16, alpha=32 on q_proj, ...' with the target parameters when there are any."""
    names = ", ".join(targets) + (f" and the parameters {', '.join(parameters)}" if parameters else "")
    return f"LoRA r={REFERENCE.rank}, alpha={REFERENCE.alpha} on {names}"
