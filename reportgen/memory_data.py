"""The memory estimate's records: its stated assumptions with their sources, and one row per method.

Part of the data model (reportgen.data re-exports every name here); split out so
that each module stays short. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .formatting import GIB

# Sources of the memory estimate, cited beside each assumption.
KORTHIKANTI_2022 = (
    "Korthikanti et al. 2022, Reducing Activation Recomputation in Large Transformer Models, "
    "sec. 4 (arXiv:2205.05198)"
)
QLORA_2023 = "Dettmers et al. 2023, QLoRA: Efficient Finetuning of Quantized LLMs, sec. 3 (arXiv:2305.14314)"
ADAM_8BIT_2022 = "Dettmers et al. 2022, 8-bit Optimizers via Block-wise Quantization, sec. 2 (arXiv:2110.02861)"
LLM_INT8_2022 = "Dettmers et al. 2022, LLM.int8(): 8-bit Matrix Multiplication for Transformers at Scale (arXiv:2208.07339)"
ZERO_2020 = (
    "Rajbhandari et al. 2020, ZeRO: Memory Optimizations Toward Training Trillion Parameter Models, "
    "sec. 3.1 (arXiv:1910.02054)"
)
PEFT_SOURCE = "PEFT 0.21: get_peft_model(autocast_adapter_dtype=True), LoraConfig(lora_dropout=0.0) defaults"
PEFT_CAST = "PEFT 0.21 lora.Linear.forward: x = self._cast_input_dtype(x, lora_A.weight.dtype) before lora_A"
HF_LOSS = ("transformers 5.23 loss_utils.ForCausalLMLoss: logits.float(), then cross_entropy "
           "(log_softmax + nll_loss)")
HF_SDPA = ("transformers 5.23: attn_implementation sdpa by default (integrations/sdpa_attention.py); "
           "torch.nn.functional.scaled_dot_product_attention keeps its output and an fp32 logsumexp")
HF_EAGER = ("transformers 5.23 eager_attention_forward: softmax(q k^T, dtype=float32).to(q.dtype), "
            "repeat_kv before both matmuls")
HF_CHECKPOINTING = ("transformers 5.23 gradient_checkpointing_enable: torch.utils.checkpoint, "
                    "use_reentrant=False, per decoder layer")
TORCH_ADAMW = "torch.optim.AdamW: exp_avg and exp_avg_sq allocated like the parameter (its dtype)"
BNB_INPUTS = ("bitsandbytes 0.50 autograd/_functions.py MatMul4Bit.forward: ctx.tensors = (None, B), the packed "
              "weight only; before 0.43.2 ctx.tensors = (A, B), removed by bitsandbytes PR #1270 ('delete useless "
              "buffered activation', July 2024); measured on CPU with bitsandbytes 0.50.2 (make validate-memory)")
PEFT_KBIT = ("PEFT 0.21 utils/other.py prepare_model_for_kbit_training: 'cast all non INT8 parameters to fp32'; "
             "bitsandbytes 0.50 Linear4bit.forward: x.to(compute_dtype), then the output back to the input's dtype; "
             "measured on CPU (make validate-memory)")
BNB_PAGED = ("bitsandbytes paged optimizers: states in CUDA unified memory (cudaMallocManaged), outside "
             "PyTorch's allocator, paged to CPU memory under pressure")
BF16_TRUE = ("litgpt precision bf16-true and torchtune: weights, gradients and AdamW states in bf16, "
             "no fp32 master copy")
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit", "paged-adamw", "paged-adamw-8bit")
BASE_DTYPES = ("fp32", "bf16", "fp16", "int8")
ATTENTIONS = ("sdpa", "eager")
ADAPTER_DTYPES = ("fp32", "base")
FULL_PRECISIONS = ("mixed", "bf16")


@dataclass(frozen=True)
class Assumption:
    """One stated assumption of the memory estimate: its value, what it means, and its source."""

    name: str
    value: str
    statement: str
    source: str


@dataclass(frozen=True)
class MemoryAssumptions:
    """The inputs of the training-memory estimate; every one is printed beside the numbers."""

    seq_len: int = 2048  # tokens per sequence
    batch_size: int = 1  # sequences per micro-batch (per GPU, per step)
    grad_checkpointing: bool = True  # recompute each layer in the backward pass
    optimizer: str = "adamw"  # adamw (fp32 m and v) or adamw-8bit (block-wise 8-bit m and v)
    base_dtype: str = "bf16"  # frozen base weights of `full` and `lora`: fp32, bf16, fp16 or int8
    double_quant: bool = True  # QLoRA's double quantisation of the NF4 absmax constants
    bnb_keeps_inputs: bool = False  # bitsandbytes before 0.43.2: each 4-bit Linear kept its input for the backward
    prepare_kbit: bool = False  # QLoRA after PEFT's prepare_model_for_kbit_training: what is not 4-bit upcast to fp32
    nf4_block_size: int = 64  # QLoRA: one absmax per 64 weights
    double_quant_block_size: int = 256  # QLoRA: one fp32 constant per 256 8-bit absmax values
    adam_8bit_block_size: int = 2048  # 8-bit Adam: one fp32 absmax per 2048 state values
    attention: str = "sdpa"  # sdpa (transformers' default: no s x s scores kept) or eager (scores kept)
    adapter_dtype: str = "fp32"  # fp32 (PEFT's default autocast) or base (the base weights' dtype)
    full_precision: str = "mixed"  # full fine-tuning: mixed (fp32 master copy and states) or bf16 (all bf16)
    lora_dropout: float = 0.0  # PEFT's default; above 0 each adapted module keeps its dropped input and a mask
    scenario: str = "all_linear"  # the scenario of the headline rows (the chart)
    rank: int | None = None  # the rank of the headline rows; None: the largest rank of the study
    gpu_sizes_gib: tuple[int, ...] = (24, 40, 80)  # the GPU memory sizes the fit marks and chart use, in GiB
    headroom_gib: float = 1.0  # GPU memory a row leaves free to count as fitting (CUDA context, fragmentation)

    @property
    def compute_bytes(self) -> int:
        """Bytes per element of activations and 16-bit weights: 4 under fp32, else 2 (bf16)."""
        return 4 if self.base_dtype == "fp32" else 2

    @property
    def attention_scores_stored(self) -> bool:
        """Eager attention keeps the s x s scores; SDPA's fused kernels never store them."""
        return self.attention == "eager"

    @property
    def paged(self) -> bool:
        """A paged optimizer keeps its states outside PyTorch's allocator (bitsandbytes' unified memory)."""
        return self.optimizer.startswith("paged-")

    @property
    def headroom_bytes(self) -> int:
        return int(self.headroom_gib * GIB)

    def stated(self) -> tuple[Assumption, ...]:
        """Every assumption in words, with its value and source, for the report."""
        from .memory_stated import stated_assumptions

        return stated_assumptions(self)


@dataclass(frozen=True)
class MemoryRow:
    """Training memory of one method (full, lora, qlora) at one scenario and rank, per component."""

    method: str
    scenario: str  # "all_parameters" for full fine-tuning
    rank: int | None  # None for full fine-tuning
    weight_bytes: int  # every weight on the GPU: frozen base (with quantisation constants) + trainable
    trainable_params: int
    gradient_bytes: int
    optimizer_bytes: int  # optimizer state, with the fp32 master weights of mixed precision
    activation_bytes: int
    total_bytes: int
    frozen_weight_bytes: int
    trainable_weight_bytes: int
    quantisation_bytes: int  # the quantisation constants inside frozen_weight_bytes
    fits_gib: tuple[int, ...]  # the GPU sizes (GiB) the total fits in, headroom left free
    headline: bool = False  # the chosen scenario and rank (and full fine-tuning)
    loss_buffer_bytes: int = 0  # inside activation_bytes: the loss's transient fp32 buffers (backward)
    paged_bytes: int = 0  # inside optimizer_bytes: states a paged optimizer keeps outside PyTorch's allocator
    headroom_bytes: int = 0  # what a GPU must have free beside the total for the row to fit

    @property
    def allocated_bytes(self) -> int:
        """What torch.cuda.max_memory_allocated() would report: the total less the paged optimizer states."""
        return self.total_bytes - self.paged_bytes

    @property
    def components(self) -> tuple[tuple[str, int], ...]:
        """The stacked components, in drawing order: label and bytes."""
        return (
            ("frozen weights", self.frozen_weight_bytes),
            ("trainable weights", self.trainable_weight_bytes),
            ("gradients", self.gradient_bytes),
            ("optimizer state", self.optimizer_bytes),
            ("activations", self.activation_bytes),
        )

    @property
    def label(self) -> str:
        """full / lora all_linear r=16, for tables and charts."""
        return self.method if self.rank is None else f"{self.method} {self.scenario} r={self.rank}"

    @property
    def fits_label(self) -> str:
        return ", ".join(f"{size} GiB" for size in self.fits_gib) or "none of the sizes"

    def fits(self, gib: int) -> bool:
        """Whether the total, with the headroom left free, fits a GPU of this many GiB."""
        return self.total_bytes + self.headroom_bytes <= gib * GIB


@dataclass(frozen=True)
class PublishedCheck:
    """One method's published GPU runs against the estimate: how many, how many within the band, the ratios."""

    method: str
    runs: int
    within: int
    low: float  # the lowest estimate / measured ratio
    high: float

    @property
    def label(self) -> str:
        title = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning"}.get(self.method, self.method)
        return f"{title}: {self.within} of {self.runs} within the band (estimate / measured {self.low:.2f} to {self.high:.2f})"


@dataclass(frozen=True)
class MemoryValidation:
    """How the estimate was checked (computed by `make validate-memory`, read from its summary file)."""

    cpu_cases: int  # activation measurements on CPU (saved-tensor hooks, and bitsandbytes' contexts for QLoRA)
    cpu_worst_percent: float  # the largest |estimate / measured - 1| among them, in percent
    cpu_band_percent: float
    band_percent: float  # the published runs' band
    published: tuple[PublishedCheck, ...]  # per method
    excluded: int  # published runs that cannot be reproduced (listed with the reason in benchmarks/MEMORY.md)

    @property
    def cpu_label(self) -> str:
        return (f"activations measured on CPU (saved-tensor hooks and, for QLoRA, bitsandbytes' autograd contexts; "
                f"{self.cpu_cases} cases): the estimate is within "
                f"{self.cpu_worst_percent:.1f}% of every one (band {self.cpu_band_percent:g}%).")

    @property
    def gpu_label(self) -> str:
        runs = sum(check.runs for check in self.published)
        return (f"{runs} published GPU runs (torch.cuda.max_memory_allocated), band {self.band_percent:g}%: "
                + "; ".join(check.label for check in self.published)
                + f"; {self.excluded} more cannot be reproduced with PEFT.")


@dataclass(frozen=True)
class MemoryContext:
    """What the memory section reads beside the rows: the GPU sizes and headroom of the fit marks, the checks."""

    gpu_sizes_gib: tuple[int, ...] = (24, 40, 80)
    headroom_gib: float = 1.0
    validation: MemoryValidation | None = None
    grad_checkpointing: bool = True
    attention: str = "sdpa"
