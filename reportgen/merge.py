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
import copy
import gc
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from .build import build_meta_model, embeddings_tied, parameter_count
from .data import REFERENCE, MergeCheck, MergeStatus
from .variants import ALL_LINEAR
from .errors import UsageError, one_line
from .formatting import GIB, gib_figure

# The budget is binary: --merge-budget 8 is 8 GiB (8 * 2^30 bytes), and every message says GiB.
CPU_BUDGET_GIB = 8.0  # fits every bundled model up to ~1.5B whole on a 24 GiB laptop; larger ones as a replica
CUDA_BUDGET_FRACTION = 0.5  # of the GPU's own memory
REPLICA_LAYERS = 2  # at least two blocks, so a stack (and an alternating layer pattern) is exercised
SEED = 0
RUNTIME_BYTES = 512 * 1024**2  # the interpreter, torch, transformers and PEFT themselves (~0.4 GiB RSS)
BATCH = (2, 4)  # (sequences, tokens): 8 token positions; the forward passes cost in proportion

# The fill. Drawing 1.2B normal samples costs ~20 s on two cores, so each tensor is
# instead filled by tiling one seeded uniform block of a prime length: the copy runs
# at memory speed, consecutive tensors start at different offsets of one long stream,
# and because the length is prime no row of a (out, in) weight repeats another
# (rows repeat only every PATTERN_LENGTH rows). The values are non-constant and
# deterministic; the merge algebra does not care how random they are, only that
# they are not degenerate. Scales keep activations and logits O(1): weights
# U(-0.03, 0.03) (std ~0.017, near the usual initializer_range), norm weights 1 +
# that, biases that alone; LoRA A and B U(-0.08, 0.08), so that scaling * B @ A
# (alpha/r = 2) is as large as the base weight it is added to and moves the logits
# by far more than the tolerance.
PATTERN_LENGTH = 4_194_301  # prime, > any weight row
WEIGHT_SCALE = 0.03
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


@dataclass(frozen=True)
class MergePlan:
    """What will be materialised: the whole model, a replica, or nothing, and why."""

    kind: str  # whole, replica, skipped
    config: PretrainedConfig
    layers: int
    total_layers: int
    needed_bytes: int  # estimate for what is materialised (the smallest replica when skipped)
    whole_bytes: int  # estimate for the whole model
    budget_bytes: int


def num_layers(config: PretrainedConfig) -> int:
    """The number of repeated blocks a config declares."""
    return int(config.num_hidden_layers)


def replica_config(config: PretrainedConfig, layers: int) -> PretrainedConfig:
    """The same config with fewer blocks; per-layer lists (layer_types, ...) keep every kind of layer."""
    total = num_layers(config)
    replica = copy.deepcopy(config)
    per_layer = {
        name: value for name, value in vars(config).items()
        if isinstance(value, (list, tuple)) and len(value) == total and name != "architectures"
    }
    kept = _kept_layers(list(per_layer.get("layer_types", [None] * total)), layers)
    replica.num_hidden_layers = len(kept)
    for name, value in per_layer.items():
        setattr(replica, name, type(value)(value[i] for i in kept))
    return replica


def _kept_layers(layer_types: list[object], layers: int) -> list[int]:
    """The first layers, plus the first layer of every kind the first ones miss (Gemma-2: sliding and full)."""
    kept = set(range(min(layers, len(layer_types))))
    for kind in dict.fromkeys(layer_types):
        if kind not in {layer_types[i] for i in kept}:
            kept.add(layer_types.index(kind))
    return sorted(kept)


def estimate_bytes(model: nn.Module, dtype: torch.dtype, vocab_size: int) -> int:
    """Peak memory of the check on this (meta) model: the weights once, plus a margin, the logits, the runtime.

    The base weights exist once: PEFT wraps the model in place and merge_and_unload
    adds each delta into its weight in place. The margin (5 %) covers the LoRA
    weights (r=16 on q, k, v, o is under 2 % of any model), one delta at a time and
    the activations of a few tokens.
    """
    weights = parameter_count(model) * (torch.finfo(dtype).bits // 8)
    logits = 4 * 2 * BATCH[0] * BATCH[1] * vocab_size * 4  # the doubled batch's logits, a few fp32 copies
    return weights + weights // 20 + logits + RUNTIME_BYTES


def plan_materialisation(
    config: PretrainedConfig, dtype: torch.dtype, budget_bytes: int, trust_remote_code: bool = False
) -> MergePlan:
    """The whole model if it fits the budget, else the largest replica of up to REPLICA_LAYERS, else nothing."""
    total = num_layers(config)
    whole = estimate_bytes(build_meta_model(config, trust_remote_code), dtype, config.vocab_size)
    if whole <= budget_bytes:
        return MergePlan("whole", config, total, total, whole, whole, budget_bytes)
    needed = whole
    for layers in range(min(REPLICA_LAYERS, total - 1), 0, -1):
        replica = replica_config(config, layers)
        needed = estimate_bytes(build_meta_model(replica, trust_remote_code), dtype, config.vocab_size)
        if needed <= budget_bytes:
            return MergePlan("replica", replica, num_layers(replica), total, needed, whole, budget_bytes)
    return MergePlan("skipped", config, 0, total, needed, whole, budget_bytes)


class PatternFill:
    """Fills tensors from one seeded stream: a uniform block of prime length, tiled (see PATTERN_LENGTH)."""

    def __init__(self, device: str, dtype: torch.dtype, seed: int = SEED) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.unit = torch.empty(PATTERN_LENGTH).uniform_(-1.0, 1.0, generator=generator)
        self.device, self.dtype = device, dtype
        self.blocks: dict[float, torch.Tensor] = {}  # the block pre-scaled, so each tensor is written once
        self.offset = 0

    @torch.no_grad()
    def fill(self, tensor: torch.Tensor, scale: float, shift: float = 0.0) -> None:
        """tensor <- shift + scale * the next tensor.numel() values of the stream."""
        if scale not in self.blocks:
            self.blocks[scale] = (self.unit * scale).to(device=self.device, dtype=self.dtype)
        block = self.blocks[scale]
        flat = tensor.view(-1)
        done = 0
        while done < flat.numel():
            start = (self.offset + done) % PATTERN_LENGTH
            count = min(PATTERN_LENGTH - start, flat.numel() - done)
            flat[done:done + count].copy_(block[start:start + count])
            done += count
        self.offset += flat.numel()
        if shift:
            flat.add_(shift)


def materialise(
    config: PretrainedConfig, device: str, dtype: torch.dtype, filler: PatternFill, trust_remote_code: bool = False
) -> PreTrainedModel:
    """The model with every parameter allocated once on device (tied ones shared) and filled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Parameters on meta, buffers (rotary inv_freq, ...) computed for real.
        with init_empty_weights(include_buffers=False):
            model: PreTrainedModel = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
                config, trust_remote_code=trust_remote_code
            )
    model.tie_weights()  # tie on meta, so a tied head is allocated once, not filled twice
    made: dict[int, nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) not in made:
                real = nn.Parameter(torch.empty(param.shape, device=device, dtype=dtype), requires_grad=False)
                shift = 1.0 if param.dim() == 1 and not name.endswith("bias") else 0.0  # norm weights near 1
                filler.fill(real, WEIGHT_SCALE, shift)
                made[id(param)] = real
            module._parameters[name] = made[id(param)]
    for module in model.modules():  # the buffers (rotary inv_freq, ...); the parameters are already there
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = buffer.to(device)
    model.eval()  # type: ignore[no-untyped-call]
    return model


def fixed_batch(vocab_size: int, device: str) -> torch.Tensor:
    """The same token ids for every run: a (sequences, tokens) stride through the vocabulary."""
    count = BATCH[0] * BATCH[1]
    return ((torch.arange(count) * 7919 + 13) % vocab_size).view(*BATCH).to(device)


@torch.inference_mode()
def logits(model: nn.Module, ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """The model's logits for the batch, in fp32."""
    out: torch.Tensor = model(input_ids=ids, use_cache=False, **kwargs).logits.float()
    return out


def base_and_adapted_logits(peft_model: PeftModel, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The base model's and the adapted model's logits for the batch, from one forward pass.

    PEFT's mixed-batch forward runs the batch twice over, the first copy through
    the base layers alone ("__base__") and the second with the adapter. On CPU a
    pass over a large model is bound by reading its weights, so one pass for
    both costs about half as much as two.
    """
    both = torch.cat([ids, ids])
    names = ["__base__"] * len(ids) + ["default"] * len(ids)
    out = logits(peft_model, both, adapter_names=names)
    return out[: len(ids)], out[len(ids):]


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
) -> tuple[MergeCheck, str]:
    """The merge check of one model and the merged model's printout ("" when nothing was materialised).

    ``merge`` and ``dtype`` are seams for tests: a deliberately wrong merge must be
    reported as failed, and the GPU's bf16 path can be exercised on CPU.
    """
    device = select_device(device)
    dtype = dtype or merge_dtype(device)
    budget = default_budget_bytes(device) if budget_bytes is None else budget_bytes
    chosen = plan_materialisation(config, dtype, budget, trust_remote_code)
    dtype_name = str(dtype).removeprefix("torch.")
    if chosen.kind == "skipped":
        return MergeCheck(
            status=MergeStatus.SKIPPED, materialised="nothing", device=device, dtype=dtype_name,
            note=f"skipped: too large for the budget: {_sizes(chosen, dtype_name)}",
        ), ""
    try:
        with strict_fp32(device):
            return _run(chosen, targets, device, dtype, merge, trust_remote_code)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        # The check did not complete: say so, never call it passed (an out-of-memory error lands here too).
        return MergeCheck(
            status=MergeStatus.ERROR, materialised=_materialised(chosen, targets, dtype_name), device=device,
            dtype=dtype_name, note=f"the merge check could not run: {type(exc).__name__}: {one_line(str(exc))}",
        ), ""
    finally:
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def _run(
    chosen: MergePlan, targets: Sequence[str], device: str, dtype: torch.dtype, merge: Merge, trust_remote_code: bool
) -> tuple[MergeCheck, str]:
    """Materialise, adapt, merge, compare: the check itself."""
    filler = PatternFill(device, dtype)
    model = materialise(chosen.config, device, dtype, filler, trust_remote_code)
    base = _Snapshot(parameter_count(model), module_classes(model), embeddings_tied(model))
    ids = fixed_batch(chosen.config.vocab_size, device)
    peft_model = _adapt(model, targets, filler)
    before, adapted = base_and_adapted_logits(peft_model, ids)
    merged = merge(peft_model)
    after = logits(merged, torch.cat([ids, ids]))[len(ids):]  # the same batch shape as the adapted pass
    scale = max(adapted.abs().max().item(), 1e-30)
    tolerance = RELATIVE_TOLERANCE[dtype] * scale
    diff = (after - adapted).abs().max().item()
    effect = (adapted - before).abs().max().item()
    problems = structure_problems(merged, base)
    if not diff <= tolerance:  # also catches NaN
        problems.insert(0, f"merged logits differ from the adapted ones by {diff:.3g} > tolerance {tolerance:.3g}")
    if not effect >= MIN_EFFECT_TOLERANCES * tolerance:
        problems.append(f"the LoRA moved the logits by only {effect:.3g}, too little for the check to prove anything")
    dtype_name = str(dtype).removeprefix("torch.")
    check = MergeCheck(
        status=MergeStatus.FAILED if problems else MergeStatus.PASSED,
        passed=not problems,
        max_abs_diff=diff,
        tolerance=tolerance,
        materialised=_materialised(chosen, targets, dtype_name),
        device=device,
        dtype=dtype_name,
        params_after_merge=parameter_count(merged),
        lora_effect=effect,
        note="; ".join(problems) if problems else (
            f"merged logits equal the adapted ones within {RELATIVE_TOLERANCE[dtype]:g} of the largest logit "
            f"({scale:.3g}); the LoRA itself moved them by {effect:.3g}; parameters, module classes"
            f"{' and tied embeddings' if base.tied else ''} are the base model's again, no LoRA module remains"
        ),
    )
    return check, repr(merged)


def _adapt(model: PreTrainedModel, targets: Sequence[str], filler: PatternFill) -> PeftModel:
    """The model wrapped by PEFT (in place, no copy of the base weights) with non-zero A and B."""
    target_modules: str | list[str] = ALL_LINEAR if list(targets) == [ALL_LINEAR] else list(targets)
    config = LoraConfig(
        r=REFERENCE.rank, lora_alpha=REFERENCE.alpha, target_modules=target_modules, lora_dropout=0.0, bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=False,  # PEFT's default zeroes B, which would make the check vacuous; filled below
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, config)
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            filler.fill(param.data, LORA_SCALE)
    peft_model.eval()
    return peft_model


def _materialised(chosen: MergePlan, targets: Sequence[str], dtype_name: str) -> str:
    """What was built, in words, with its numbers."""
    lora = f"LoRA r={REFERENCE.rank}, alpha={REFERENCE.alpha} on {', '.join(targets)}"
    weights = f"random weights (seeded pattern), {dtype_name}"
    if chosen.kind == "whole":
        return f"whole model: all {chosen.total_layers} layers, {weights}, ~{gib_figure(chosen.needed_bytes)} GiB; {lora}"
    return (
        f"replica: {chosen.layers} of {chosen.total_layers} layers with the same widths, {weights}, "
        f"~{gib_figure(chosen.needed_bytes)} GiB (the whole model needs ~{gib_figure(chosen.whole_bytes)} GiB, "
        f"budget {gib_figure(chosen.budget_bytes)} GiB); {lora}"
    )


def _sizes(chosen: MergePlan, dtype_name: str) -> str:
    """The numbers behind a skip."""
    return (
        f"the whole model needs ~{gib_figure(chosen.whole_bytes)} GiB and a 1-layer replica "
        f"~{gib_figure(chosen.needed_bytes)} GiB in {dtype_name}, the budget is {gib_figure(chosen.budget_bytes)} GiB "
        "(--merge-budget)"
    )
