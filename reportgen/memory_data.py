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
METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw-8bit")
BASE_DTYPES = ("fp32", "bf16", "fp16", "int8")


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
    nf4_block_size: int = 64  # QLoRA: one absmax per 64 weights
    double_quant_block_size: int = 256  # QLoRA: one fp32 constant per 256 8-bit absmax values
    adam_8bit_block_size: int = 2048  # 8-bit Adam: one fp32 absmax per 2048 state values
    attention_scores_stored: bool = True  # eager attention keeps the s x s scores (the paper's case)
    scenario: str = "all_linear"  # the scenario of the headline rows (the chart)
    rank: int | None = None  # the rank of the headline rows; None: the largest rank of the study
    gpu_sizes_gib: tuple[int, ...] = (24, 40, 80)  # common GPU memory sizes, in GiB

    @property
    def compute_bytes(self) -> int:
        """Bytes per element of activations and 16-bit weights: 4 under fp32, else 2 (bf16)."""
        return 4 if self.base_dtype == "fp32" else 2

    def stated(self) -> tuple[Assumption, ...]:
        """Every assumption in words, with its value and source, for the report."""
        a = self
        ckpt = "on" if a.grad_checkpointing else "off"
        scores = "eager attention: s x s scores and softmax kept" if a.attention_scores_stored else (
            "memory-efficient attention: no s x s scores, an fp32 logsumexp per head and token")
        return (
            Assumption("seq_len", str(a.seq_len), "tokens per sequence", "--seq-len"),
            Assumption("batch_size", str(a.batch_size), "sequences per micro-batch on one GPU", "--batch-size"),
            Assumption("base_dtype", a.base_dtype,
                       "frozen base weights of full and lora (full trains 16-bit weights when int8 is asked "
                       "for); int8 stores one fp32 scale per output row; activations are fp32 under fp32, "
                       "else 16-bit", f"--base-dtype; {LLM_INT8_2022}"),
            Assumption("qlora_weights", f"NF4, block {a.nf4_block_size}, double quantisation "
                       f"{'on' if a.double_quant else 'off'}",
                       "qlora stores every Linear/Conv1D/expert weight of the blocks in 4 bits with one absmax "
                       f"per {a.nf4_block_size} weights (fp32, or 8-bit plus one fp32 constant per "
                       f"{a.double_quant_block_size} absmax with double quantisation); embeddings, output head, "
                       "norms and biases stay 16-bit", QLORA_2023),
            Assumption("adapter_dtype", "fp32",
                       "LoRA A and B, their gradients and optimizer state are fp32 (PEFT upcasts 16-bit "
                       "adapters); lora_dropout 0, so adapters store no extra input copy", PEFT_SOURCE),
            Assumption("full_precision", "mixed precision" if a.compute_bytes == 2 else "fp32",
                       "full fine-tuning: weights and gradients in the weight dtype; with 16-bit weights an "
                       "fp32 master copy (4 bytes per parameter) is counted in the optimizer state "
                       "(2 + 2 + 12 bytes per parameter with AdamW)", ZERO_2020),
            Assumption("optimizer", a.optimizer,
                       "AdamW: fp32 m and v, 8 bytes per trainable parameter" if a.optimizer == "adamw" else
                       f"8-bit AdamW: m and v in 8 bits with one fp32 absmax per {a.adam_8bit_block_size} "
                       "values (bitsandbytes' 32-bit fallback for tensors under 4096 values is ignored)",
                       "--optimizer; " + (ZERO_2020 if a.optimizer == "adamw" else ADAM_8BIT_2022)),
            Assumption("grad_checkpointing", ckpt,
                       "on: each layer's input (s*b*h) is kept and one layer's activations are alive during "
                       "its recomputation; off: every layer's activations are kept",
                       f"--grad-checkpointing; {KORTHIKANTI_2022}"),
            Assumption("activations", scores,
                       "per layer, s*b*h*(34 + 5*a*s/h) bytes (16-bit) rewritten term by term: q and o widths "
                       "from heads*head_dim, k and v widths from kv heads, the MLP from its intermediate size "
                       "(gated: gate, up, act(gate) and product kept; experts: top-k experts per token plus "
                       "router logits), dropout masks only where the config has dropout, both norms' inputs, "
                       "and LoRA's x*A (s*b*r per adapted matrix); plus the logits, s*b*vocab in fp32. Not "
                       "counted: embeddings output, 16-bit logits and the loss buffers, rotary tables, "
                       "frozen-weight savings in autograd, dequantised weights of QLoRA, temporary "
                       "kernel workspace", KORTHIKANTI_2022),
            Assumption("gpu_fit", ", ".join(f"{size} GiB" for size in a.gpu_sizes_gib),
                       "a row fits a GPU when its total is at most the GPU's memory; the CUDA context "
                       "(~0.5 GiB), allocator fragmentation and other processes are not counted: leave headroom",
                       "1 GiB = 2^30 bytes"),
        )


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
    fits_gib: tuple[int, ...]  # the GPU sizes (GiB) the total fits in
    headline: bool = False  # the chosen scenario and rank (and full fine-tuning)

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
        """Whether the total fits a GPU of this many GiB."""
        return self.total_bytes <= gib * GIB
