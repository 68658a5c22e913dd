"""The merge check's model on real tensors: built from its config, its stacks cut, every weight filled once."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from .merge_plan import BATCH, Keep
from .replica import layer_stacks, prune

SEED = 0

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
    config: PretrainedConfig, device: str, dtype: torch.dtype, filler: PatternFill, trust_remote_code: bool = False,
    keep: Keep | None = None,
) -> PreTrainedModel:
    """The model (its stacks cut to ``keep`` when given) with every parameter allocated once on device and filled."""
    model = _fast_build(config, trust_remote_code)
    if model is None:
        model = _build_on_meta(config, trust_remote_code, large_on_meta=False)
    model.tie_weights()  # tie on meta, so a tied head is allocated once, not filled twice
    if keep:  # after tying: a block shared between layers (Zamba) is tied by the layers' names before the cut
        prune(model, layer_stacks(model), keep)
    made: dict[int, nn.Parameter] = {}
    for module in model.modules():
        is_norm = "norm" in type(module).__name__.lower()
        for name, param in list(module._parameters.items()):
            if param is None:
                continue
            if id(param) not in made:
                real = nn.Parameter(torch.empty(param.shape, device=device, dtype=dtype), requires_grad=False)
                # Norm weights near 1; any other vector (a bias, DiffLlama's lambda_q1, Mamba's D) near 0, as
                # initialised: a vector of ones in exp(lambda_q1 . lambda_k1) overflows fp32.
                # Doge's input_residual and post_attention_residual scale the residual stream and start at 1:
                # near 0 they shrink it every layer and the random model amplifies rounding (a 1-ulp change of
                # every v_proj moved its 32-layer logits by 0.47), far beyond the merge tolerance.
                ones = (is_norm and not name.endswith("bias")) or name.endswith("residual")
                shift = 1.0 if param.dim() == 1 and ones else 0.0
                filler.fill(real, WEIGHT_SCALE, shift)
                made[id(param)] = real
            module._parameters[name] = made[id(param)]
    for module in model.modules():  # the buffers (rotary inv_freq, ...); the parameters are already there
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = buffer.to(device)
    model.eval()  # type: ignore[no-untyped-call]
    _default_language(model, config)
    _eager_experts_if_unaligned(model)
    return model


def _build_on_meta(config: PretrainedConfig, trust_remote_code: bool, large_on_meta: bool) -> PreTrainedModel:
    """The model with its parameters on meta and its buffers (rotary inv_freq, ...) computed for real.

    init_empty_weights moves each parameter to meta as it is registered, but a parameter made by torch.zeros
    (Llama 4's experts) is first allocated and written on CPU: 45 of the 60 s of Llama 4's merge check went
    there, for 48 layers the replica then cuts. With ``large_on_meta`` the tensor constructors make every
    tensor of at least LARGE values on meta directly; a buffer that large goes there too, and the caller
    builds again without.
    """
    with warnings.catch_warnings(), init_empty_weights(include_buffers=False), \
            (_large_tensors_on_meta() if large_on_meta else contextlib.nullcontext()):
        warnings.simplefilter("ignore")
        model: PreTrainedModel = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            copy.deepcopy(config), trust_remote_code=trust_remote_code
        )
    return model


def _fast_build(config: PretrainedConfig, trust_remote_code: bool) -> PreTrainedModel | None:
    """The model built with its large tensors made on meta; None where that cannot be trusted: remote code (run
    as it is), a build that failed that way (it read a large tensor's values), or a buffer or tensor attribute
    left on meta (a causal-mask table)."""
    if trust_remote_code:
        return None
    try:
        AutoModelForCausalLM._model_mapping[type(config)]  # its modeling code imported before the patch, not under it
        model = _build_on_meta(config, trust_remote_code, large_on_meta=True)
    except Exception:  # noqa: BLE001 - whatever it was, the plain build below says it again if it is real
        return None
    return None if _meta_besides_parameters(model) else model


def _meta_besides_parameters(model: nn.Module) -> bool:
    """Whether a buffer or a tensor a module keeps as a plain attribute is on meta."""
    return any(buffer.is_meta for buffer in model.buffers()) or any(
        isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter) and value.is_meta
        for module in model.modules() for value in vars(module).values())


LARGE = 1 << 16  # values: a weight usually has more, a norm's weight or a small buffer fewer
CONSTRUCTORS = ("empty", "zeros", "ones", "full")


@contextlib.contextmanager
def _large_tensors_on_meta() -> Iterator[None]:
    """torch.empty/zeros/ones/full of at least LARGE values, without a device of their own, made on meta."""
    originals = {name: getattr(torch, name) for name in CONSTRUCTORS}

    def on_meta(name: str) -> Callable[..., torch.Tensor]:
        made = originals[name]

        def constructor(*args: Any, **kwargs: Any) -> torch.Tensor:
            if (kwargs.get("device") is None and "out" not in kwargs and not kwargs.get("pin_memory")
                    and _values(name, args, kwargs) >= LARGE):
                kwargs["device"] = "meta"
            tensor: torch.Tensor = made(*args, **kwargs)
            return tensor
        return constructor

    try:
        for name in CONSTRUCTORS:
            setattr(torch, name, on_meta(name))
        yield
    finally:
        for name, made in originals.items():
            setattr(torch, name, made)


def _values(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """How many values a constructor call asks for (0 where its size cannot be read)."""
    size = kwargs.get("size", args[0] if args and (name == "full" or len(args) == 1) else args)
    if isinstance(size, int):
        size = (size,)
    try:
        return math.prod(int(dim) for dim in size)
    except (TypeError, ValueError):
        return 0


def _eager_experts_if_unaligned(model: PreTrainedModel) -> None:
    """transformers' default grouped_mm experts need every row of an expert weight to span a multiple of
    16 bytes (torch's grouped_mm); DeepSeek-V2's 1,407-wide experts do not, so they run eager (the reference
    loop over experts, the same weights and the same merge)."""
    for name, param in model.named_parameters():
        if "expert" in name and param.dim() == 3 and any(size * param.element_size() % 16 for size in param.shape[1:]):
            try:
                model.set_experts_implementation("eager")
            except (ValueError, AttributeError):  # a model that cannot switch keeps its own
                pass
            return


def _default_language(model: nn.Module, config: PretrainedConfig) -> None:
    """X-MOD routes each batch through one language's adapter: the config's first language, as a user would set."""
    languages = list(getattr(config, "languages", None) or ())
    for module in model.modules():
        if languages and callable(setter := getattr(module, "set_default_language", None)):
            setter(languages[0])
            return


def fixed_batch(vocab_size: int, device: str) -> torch.Tensor:
    """The same token ids for every run: a (sequences, tokens) stride through the vocabulary."""
    count = BATCH[0] * BATCH[1]
    return ((torch.arange(count) * 7919 + 13) % vocab_size).view(*BATCH).to(device)


