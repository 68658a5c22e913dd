"""Measure the activations of one training step on CPU, exactly: the storages autograd keeps for the backward.

A real small model (a bundled config with fewer layers and a smaller vocabulary, random bf16 weights) runs one forward pass with
labels under ``torch.autograd.graph.saved_tensors_hooks``; every distinct storage handed to the hooks that
is not a weight or buffer is summed. QLoRA runs the same model quantised by bitsandbytes on CPU (its 4-bit
matmul keeps its tensors on its context, not through the hooks, so the graph is walked for them too). With gradient checkpointing the checkpoint keeps each layer's inputs
(recorded where transformers hands them to the checkpoint function) and recomputes one layer at a time: that
layer's forward is measured separately under the same hooks and added. The estimate's matching terms
(reportgen.memory_activations) are computed for the same model and settings.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from .analyse import analyse
from .build import Built, build
from .data import MemoryAssumptions, ModuleRow, Scenario
from .memory import MemoryShape, adapter_bytes, memory_shape
from .memory_activations import ActivationTerms, Training, activation_terms
from .methods import plan_cell
from .quiet import captured
from .resolve import ModelSpec, resolve
from .variants import ALL_LINEAR, DEFAULT_VARIANTS

MEASURED_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MEASURED_LAYERS = 4
MEASURED_VOCAB = 8192  # shrunk too, so that the layers, not the logits, carry most of the measured bytes
RANK = 16
DTYPE = torch.bfloat16


@dataclass(frozen=True)
class Case:
    """One measured setting: what trains, attention, sequence length, checkpointing."""

    method: str  # full, lora or qlora (all-linear, PEFT's defaults: fp32 adapters; qlora: bitsandbytes NF4)
    attention: str
    seq_len: int
    grad_checkpointing: bool
    adapter_dtype: str = "fp32"  # PEFT's default autocast, or base: bf16 adapters
    lora_dropout: float = 0.0
    prepare_kbit: bool = False  # qlora: PEFT's prepare_model_for_kbit_training (what is not 4-bit upcast to fp32)
    bnb_keeps_inputs: bool = False  # qlora: bitsandbytes before 0.43.2 emulated (its 4-bit matmul keeps its input)

    @property
    def label(self) -> str:
        ckpt = "checkpointing" if self.grad_checkpointing else "no checkpointing"
        extra = "" if self.method == "full" else f", {self.adapter_dtype} adapters" + (
            f", dropout {self.lora_dropout:g}" if self.lora_dropout else "") + (
            ", prepare_model_for_kbit_training" if self.prepare_kbit else "") + (
            ", bitsandbytes before 0.43.2 (emulated)" if self.bnb_keeps_inputs else "")
        return f"{self.method}, {self.attention}, s={self.seq_len}, {ckpt}{extra}"

    @property
    def assumptions(self) -> MemoryAssumptions:
        """The estimate's assumptions for this case (batch 1, bf16 base)."""
        return MemoryAssumptions(seq_len=self.seq_len, batch_size=1, grad_checkpointing=self.grad_checkpointing,
                                 attention=self.attention, adapter_dtype=self.adapter_dtype,
                                 lora_dropout=self.lora_dropout, prepare_kbit=self.prepare_kbit,
                                 bnb_keeps_inputs=self.bnb_keeps_inputs)


@dataclass(frozen=True)
class Measurement:
    """One case's measured bytes against the estimate's, in total and by part."""

    case: Case
    parts: tuple[tuple[str, int, int], ...]  # (part, measured, estimated)

    @property
    def measured(self) -> int:
        return sum(measured for _, measured, _ in self.parts)

    @property
    def estimated(self) -> int:
        return sum(estimated for _, _, estimated in self.parts)

    @property
    def ratio(self) -> float:
        return self.estimated / self.measured


CASES = tuple(
    Case(method, attention, seq_len, ckpt)
    for method in ("lora", "full") for attention in ("sdpa", "eager") for seq_len in (64, 128)
    for ckpt in (False, True)
) + (  # litgpt's LoRA settings: bf16 adapters, LoRA dropout
    Case("lora", "sdpa", 128, False, "base"),
    Case("lora", "sdpa", 128, False, "fp32", 0.05),
    Case("lora", "sdpa", 128, False, "base", 0.05),
) + (  # QLoRA through transformers' BitsAndBytesConfig, PEFT's defaults, and litgpt's LoRA settings
    Case("qlora", "sdpa", 128, False),
    Case("qlora", "sdpa", 128, True),
    Case("qlora", "sdpa", 128, False, "base", 0.05),
    Case("qlora", "sdpa", 128, False, prepare_kbit=True),  # PEFT's QLoRA recipe
    Case("qlora", "sdpa", 128, True, prepare_kbit=True),
    # bitsandbytes before 0.43.2 (litgpt's runs): its 4-bit matmul also kept its input on its context
    Case("qlora", "sdpa", 128, False, bnb_keeps_inputs=True),
    Case("qlora", "sdpa", 128, True, bnb_keeps_inputs=True),
)


class SavedStorages:
    """Distinct storages handed to autograd's saved-tensor hooks, weights and buffers excluded."""

    def __init__(self, model: nn.Module) -> None:
        self.excluded = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
        self.sizes: dict[int, int] = {}

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.excluded:
            self.sizes.setdefault(storage.data_ptr(), storage.nbytes())

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @contextlib.contextmanager
    def hooked(self) -> Iterator[None]:
        def pack(tensor: torch.Tensor) -> torch.Tensor:
            self.add(tensor)
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield


@functools.lru_cache(maxsize=1)
def measured_config() -> Any:
    """The measured model's config: the bundled one with fewer layers and a smaller vocabulary, the same widths."""
    import copy

    config = copy.deepcopy(build(resolve(ModelSpec(MEASURED_MODEL, "memory measurement"))).config)
    config.num_hidden_layers = MEASURED_LAYERS  # a Llama: every layer the same kind
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:MEASURED_LAYERS]
    config.vocab_size = MEASURED_VOCAB
    return config


def shrunk_model(case: Case) -> Any:
    """The measured model with real bf16 weights; LoRA on all linear layers with PEFT's defaults (fp32 adapters)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    # captured(): the libraries' notes, progress bars and deprecation warnings stay off the terminal.
    with captured():
        model: Any = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            measured_config(), dtype=DTYPE, attn_implementation=case.attention)
        if case.method == "qlora":
            model = _quantised(model, case)
        if case.prepare_kbit:  # checkpointing is turned on below, as for every case
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
                model, use_gradient_checkpointing=False)
        if case.method in ("lora", "qlora"):
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(r=RANK, target_modules="all-linear", lora_dropout=case.lora_dropout)
            model = get_peft_model(model, config, autocast_adapter_dtype=case.adapter_dtype == "fp32")
        if case.grad_checkpointing:
            model.gradient_checkpointing_enable()  # transformers' default: non-reentrant torch.utils.checkpoint
    model.train()
    return model


def _quantised(model: Any, case: Case) -> Any:
    """The same model loaded in 4 bits as a QLoRA user loads it: from_pretrained with a BitsAndBytesConfig
    (NF4, double quantisation, bf16 compute), here on CPU (bitsandbytes' CPU backend)."""
    import tempfile

    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantisation = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=DTYPE)
    with tempfile.TemporaryDirectory(prefix="reportgen-qlora-") as folder:
        model.save_pretrained(folder)
        return AutoModelForCausalLM.from_pretrained(folder, quantization_config=quantisation, dtype=DTYPE,
                                                    device_map="cpu", attn_implementation=case.attention)


def held_on_contexts(output: torch.Tensor, model: nn.Module, seen_by_hooks: frozenset[int] = frozenset()) -> int:
    """Bytes of the tensors that custom autograd functions keep on their context (bitsandbytes' 4-bit matmul:
    ``ctx.tensors``) rather than through save_for_backward, where the hooks never see them: weights and
    the storages the hooks saw already (``seen_by_hooks``) excluded."""
    excluded = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())} | seen_by_hooks
    sizes: dict[int, int] = {}
    seen: list[Any] = []  # the nodes themselves: autograd makes a node's Python object on demand, so ids are reused
    seen_ids: set[int] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen_ids:
            continue
        seen.append(node)
        seen_ids.add(id(node))
        for value in getattr(node, "__dict__", {}).values():
            for tensor in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in excluded:
                    sizes.setdefault(tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        stack.extend(function for function, _ in node.next_functions)
    return sum(sizes.values())


@contextlib.contextmanager
def bitsandbytes_before_0_43_2(active: bool) -> Iterator[None]:
    """Within the block, bitsandbytes' 4-bit matmul also keeps its input on its context, as it did before 0.43.2
    (``ctx.tensors = (A, B)``; bitsandbytes PR #1270 kept only B)."""
    if not active:
        yield
        return
    from bitsandbytes.autograd import _functions

    original = _functions.MatMul4Bit.__dict__["forward"]  # the staticmethod itself, put back as it was
    today = _functions.MatMul4Bit.forward

    def forward(ctx: Any, A: torch.Tensor, B: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        output: torch.Tensor = today(ctx, A, B, *args, **kwargs)
        if not ctx.is_empty and any(ctx.needs_input_grad[:2]):
            ctx.tensors = (A, ctx.tensors[1])
        return output

    _functions.MatMul4Bit.forward = staticmethod(forward)  # type: ignore[method-assign]
    try:
        yield
    finally:
        _functions.MatMul4Bit.forward = original  # type: ignore[method-assign]


def _decoder_layers(model: nn.Module) -> list[Any]:
    return [module for module in model.modules() if getattr(module, "gradient_checkpointing", False)]


def measure(case: Case) -> tuple[int, int, int, int]:
    """Measured bytes: kept outside the layers, the layers' inputs (checkpointing), the layers or one layer, and
    what custom autograd functions hold on their contexts."""
    model = shrunk_model(case)
    ids = torch.randint(0, 1000, (1, case.seq_len), generator=torch.Generator().manual_seed(0))
    outside = SavedStorages(model)
    inputs = SavedStorages(model)
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    for layer in _decoder_layers(model):
        layer._gradient_checkpointing_func = functools.partial(_recording, layer._gradient_checkpointing_func,
                                                               inputs, calls)
    legacy = bitsandbytes_before_0_43_2(case.bnb_keeps_inputs)
    with legacy, outside.hooked(), captured():  # captured: transformers' note that checkpointing turns the cache off
        loss = model(input_ids=ids, labels=ids).loss
    hooked = frozenset(outside.sizes) | frozenset(inputs.sizes)
    if not case.grad_checkpointing:
        return 0, 0, outside.total, held_on_contexts(loss, model, hooked)
    function, args = calls[0]  # the first layer's recomputation, under the same hooks
    one_layer = SavedStorages(model)
    with bitsandbytes_before_0_43_2(case.bnb_keeps_inputs), one_layer.hooked():
        recomputed = function(*args)
    hooked |= frozenset(one_layer.sizes)
    held = held_on_contexts(loss, model, hooked) + held_on_contexts(
        recomputed[0] if isinstance(recomputed, tuple) else recomputed, model, hooked)
    # The checkpoint hands the layers' inputs to the outer hooks too: each storage is counted once, as an input.
    outside_only = sum(size for pointer, size in outside.sizes.items() if pointer not in inputs.sizes)
    return outside_only, inputs.total, one_layer.total, held


def _recording(checkpoint: Callable[..., Any], inputs: SavedStorages,
               calls: list[tuple[Callable[..., Any], tuple[Any, ...]]], function: Any, *args: Any) -> Any:
    """transformers' checkpoint call, with the tensors the checkpoint keeps (the layer's inputs) recorded."""
    for value in (*args, *function.keywords.values()):
        for tensor in value if isinstance(value, tuple) else (value,):
            if isinstance(tensor, torch.Tensor):
                inputs.add(tensor)
    calls.append((function, args))
    return checkpoint(function, *args)


@functools.lru_cache(maxsize=1)
def _measured_shape() -> tuple[MemoryShape, tuple[ModuleRow, ...]]:
    """The measured model's shape for the estimate and the rows PEFT's all-linear adapts (analysed once)."""
    from .build import build_meta_model, describe_build
    from .roles import dimensions

    config = measured_config()
    resolved = resolve(ModelSpec(MEASURED_MODEL, "memory measurement"))
    meta = build_meta_model(config)
    analysis = analyse(Built(resolved, config, meta, dimensions(config), describe_build(resolved, meta)))
    plan = plan_cell(Scenario("all_linear", (ALL_LINEAR,), ""), RANK, DEFAULT_VARIANTS[0], analysis.rows,
                     analysis.info.model_type)
    return memory_shape(analysis.info.dimensions, analysis.rows, config), plan.rows


def estimated(case: Case) -> ActivationTerms:
    """The estimate's activation terms for the measured model and case."""
    shape, adapted = _measured_shape()
    a = case.assumptions
    if case.method == "full":
        return activation_terms(shape, a, Training(full=True, element=2, adapter=2))
    element, adapter = adapter_bytes(case.method, a)
    # On CPU torch's dropout is not fused: it keeps its mask in the input's dtype, not as a bool
    # (ATen Dropout.cpp, is_fused_kernel_acceptable: CUDA and XPU only).
    return activation_terms(shape, a, Training(full=False, element=element, adapter=adapter, chosen=adapted,
                                               rank=RANK, dropout=case.lora_dropout > 0, mask=adapter,
                                               quantised=case.method == "qlora" and a.bnb_keeps_inputs))


def compare(case: Case) -> Measurement:
    """One case measured and estimated, part by part."""
    outside, inputs, layers, held = measure(case)
    # What the hooks see is estimated without the 4-bit inputs; those kept on contexts are the last part.
    terms = estimated(replace(case, bnb_keeps_inputs=False))
    parts: tuple[tuple[str, int, int], ...]
    if case.grad_checkpointing:
        parts = (("outside the layers", outside, terms.head),
                 ("layer inputs (checkpoint)", inputs, terms.layer_inputs + terms.shared),
                 ("one layer recomputed", layers, terms.layer))
    else:
        parts = (("every saved tensor", layers, terms.saved),)
    if case.method == "qlora":  # the 4-bit inputs bitsandbytes keeps on its contexts: none since 0.43.2
        parts += (("held on bitsandbytes' contexts", held, estimated(case).saved - terms.saved),)
    return Measurement(case, parts)
