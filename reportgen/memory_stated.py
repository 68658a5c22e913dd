"""The memory estimate's assumptions in words, each with its value and source, for the report's table.

Split out of memory_data.py so that each module stays short. No torch here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .memory_data import (
    ADAM_8BIT_2022, BF16_TRUE, BNB_INPUTS, BNB_PAGED, HF_CHECKPOINTING, HF_EAGER, HF_LOSS, HF_SDPA, KORTHIKANTI_2022,
    LLM_INT8_2022, PEFT_CAST, PEFT_KBIT, PEFT_SOURCE, QLORA_2023, TORCH_ADAMW, ZERO_2020, Assumption,
)

if TYPE_CHECKING:
    from .memory_data import MemoryAssumptions


def _optimizer(a: MemoryAssumptions) -> Assumption:
    eight_bit = a.optimizer.endswith("8bit")
    words = (f"m and v in 8 bits with one fp32 absmax per {a.adam_8bit_block_size} values (bitsandbytes' "
             "32-bit fallback for tensors under 4096 values is ignored)") if eight_bit else (
        "m and v in fp32 (bitsandbytes' 32-bit states)" if a.paged else
        "m and v allocated like each trainable parameter: fp32 for fp32 adapters and master weights, "
        "bf16 for bf16 parameters")
    if a.paged:
        words += ("; paged: the states live in CUDA unified memory, outside PyTorch's allocator (not in "
                  "torch.cuda.max_memory_allocated), and move to CPU memory when the GPU is full; the total "
                  "still counts them")
    source = "--optimizer; " + "; ".join(
        ([ADAM_8BIT_2022] if eight_bit else [TORCH_ADAMW]) + ([BNB_PAGED] if a.paged else []))
    return Assumption("optimizer", a.optimizer, words, source)


def _activations(a: MemoryAssumptions) -> Assumption:
    attention = (
        "SDPA: q, k, v (kv heads), the output and an fp32 logsumexp per head; no s x s scores"
        if a.attention == "sdpa" else
        "eager: q, k and v repeated to every head, the fp32 softmax (4 bytes per score) and its 16-bit copy "
        "(2 bytes)")
    return Assumption(
        "activations", "every tensor autograd keeps, op by op",
        "per layer: each RMSNorm's fp32 input and 1/rms (LayerNorm: input, mean, rstd); " + attention + "; the "
        "MLP's inner activations (gated: gate, act(gate), up; experts: the top-k experts per token and the "
        "router logits); a trainable Linear's input (once per tensor read; a 4-bit Linear's only with "
        "--bnb-keeps-inputs); with fp32 adapters on a "
        "16-bit model each adapted module's own fp32 copy of its input, and LoRA's x A; dropout masks only "
        "where the config has dropout. Once for all layers: the rotary cos and sin (2*s*b*head_dim), with "
        "checkpointing eager's causal mask (b*s*s). Then the final norm and the loss's fp32 log-probabilities "
        "(s*b*vocab*4). Checked against a CPU measurement with saved-tensor hooks (make validate-memory). "
        "Not counted: the token ids, temporary kernel workspace, QLoRA's dequantised weights (one matrix at "
        "a time)",
        f"{KORTHIKANTI_2022}, rewritten per op; {PEFT_CAST}")


def stated_assumptions(a: MemoryAssumptions) -> tuple[Assumption, ...]:
    """Every assumption in words, with its value and source, for the report."""
    ckpt = "on" if a.grad_checkpointing else "off"
    full_mixed = a.full_precision == "mixed" and a.compute_bytes == 2
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
                   f"norms and biases stay {'fp32 (--prepare-kbit)' if a.prepare_kbit else '16-bit'}; compute in bf16",
                   f"--double-quant; {QLORA_2023}"),
        Assumption("qlora_inputs", "kept (bitsandbytes before 0.43.2)" if a.bnb_keeps_inputs else "not kept",
                   "a 4-bit Linear's weight never trains, so bitsandbytes 0.43.2 and later keep only the packed "
                   "weight for the backward, and QLoRA's activations are those of LoRA at 16 bits; bitsandbytes "
                   "before 0.43.2 (--bnb-keeps-inputs) also kept each 4-bit Linear's input, once per tensor read, "
                   "on the matmul's context, where gradient checkpointing cannot drop it (every layer's then)",
                   f"--bnb-keeps-inputs; {BNB_INPUTS}"),
        Assumption("qlora_prepare", "prepare_model_for_kbit_training" if a.prepare_kbit else "off",
                   "off: the 4-bit model as loaded, its embeddings, head and norms 16-bit; prepare_model_for_kbit_"
                   "training (--prepare-kbit, PEFT's QLoRA recipe) upcasts every parameter not in 4 bits to fp32: "
                   "those weights take 4 bytes each, and the hidden states, so every activation, are fp32 (each "
                   "4-bit matmul computes in bf16 on a transient copy and hands its output back in fp32); fp32 "
                   "adapters then read the fp32 input as it is, with no copy of their own",
                   f"--prepare-kbit; {PEFT_KBIT}"),
        Assumption("adapter_dtype", a.adapter_dtype,
                   "fp32: LoRA A and B and their gradients are fp32 (PEFT upcasts 16-bit adapters by default) "
                   "and PEFT casts each adapted module's input to fp32; base: adapters in the base weights' "
                   "dtype, no cast (litgpt's bf16-true)", f"--adapter-dtype; {PEFT_SOURCE}"),
        Assumption("lora_dropout", f"{a.lora_dropout:g}",
                   "0 (PEFT's default): the adapters keep no extra tensor; above 0 each adapted module keeps its "
                   "own dropped copy of its input (in the adapter dtype) and the dropout's mask (1 byte per value)",
                   f"--lora-dropout; {PEFT_CAST}"),
        Assumption("full_precision", ("mixed precision" if full_mixed else "fp32") if a.full_precision == "mixed"
                   else "bf16",
                   "mixed: full fine-tuning's weights and gradients in the weight dtype, with 16-bit weights an "
                   "fp32 master copy and fp32 AdamW states (2 + 2 + 12 bytes per parameter); bf16: weights, "
                   "gradients and AdamW states in bf16, no master copy (2 + 2 + 4 bytes per parameter)",
                   f"--full-precision; {ZERO_2020}; {BF16_TRUE}"),
        _optimizer(a),
        Assumption("attention", a.attention,
                   "sdpa: transformers' default; the fused kernels keep no s x s scores. eager: the scores, "
                   "their fp32 softmax and its 16-bit copy are kept per head",
                   f"--attention; {HF_SDPA if a.attention == 'sdpa' else HF_EAGER}"),
        Assumption("grad_checkpointing", ckpt,
                   "on by default (the usual choice for LoRA on one GPU): each layer's input (s*b*h) is kept and "
                   "one layer's activations are alive during its recomputation; off: every layer's activations "
                   "are kept", f"--grad-checkpointing; {HF_CHECKPOINTING}; {KORTHIKANTI_2022}"),
        _activations(a),
        Assumption("loss_buffers", "2 fp32 tensors of s*b*vocab",
                   "the loss's peak, in its backward: nll_loss's gradient of the fp32 log-probabilities and "
                   "log_softmax's gradient of the fp32 logits, both alive beside the kept log-probabilities. "
                   "The forward's 16-bit logits (lm_head) and their fp32 upcast (logits.float()) are 6 bytes "
                   "per value, less, and freed before the backward", HF_LOSS),
        Assumption("gpu_fit", ", ".join(f"{size} GiB" for size in a.gpu_sizes_gib),
                   f"a row fits a GPU when its total plus {a.headroom_gib:g} GiB of headroom is at most the GPU's "
                   "memory: the headroom is for what the estimate leaves out (the CUDA context and kernels, "
                   "about 0.5 GiB, and the allocator's fragmentation); other processes are not counted",
                   "--gpu-memory, --gpu-headroom; 1 GiB = 2^30 bytes"),
    )
