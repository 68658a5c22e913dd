"""PEFT: count every cell again with PEFT itself, on the meta model, and keep its own words."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings
from collections.abc import Iterator

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel

from . import data
from .analyse import ALL_LINEAR
from .data import Cell, ModuleRow, PeftReference

# The walk-through's own PEFT step: LoraConfig(r=16, lora_alpha=32, q/k/v/o, dropout 0.05).
REFERENCE_RANK = 16
REFERENCE_ALPHA = 32
REFERENCE_DROPOUT = 0.05


def lora_config(cell: Cell, rows: tuple[ModuleRow, ...], dropout: float = 0.0, alpha: int | None = None) -> LoraConfig:
    """The LoraConfig that adapts exactly a cell's module rows at its rank."""
    modules = [row.peft_target for row in rows if row.kind != "experts"]
    parameters = [row.peft_target for row in rows if row.kind == "experts"]
    target_modules: str | list[str] = ALL_LINEAR if cell.targets == (ALL_LINEAR,) else modules
    return LoraConfig(
        r=cell.rank,
        lora_alpha=alpha if alpha is not None else 2 * cell.rank,
        target_modules=target_modules,
        target_parameters=parameters or None,
        lora_dropout=dropout,
        bias="none",
        task_type="CAUSAL_LM",
    )


@contextlib.contextmanager
def adapted(model: PreTrainedModel, config: LoraConfig) -> Iterator[PeftModel]:
    """The model wrapped by PEFT for the duration of the block, then unwrapped again.

    The meta model is built once per model and reused: ``unload()`` removes the
    LoRA layers and hands back the base model, which is much cheaper than building
    a fresh one for every cell.
    """
    if not hasattr(model, "prepare_inputs_for_generation"):
        config.task_type = None  # a base model (AutoModel fallback) has no causal-LM wrapper in PEFT
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
    try:
        yield peft_model
    finally:
        peft_model.unload()
        for param in model.parameters():
            param.requires_grad_(True)


def count_cell(model: PreTrainedModel, cell: Cell, rows: tuple[ModuleRow, ...]) -> Cell:
    """The cell with PEFT's trainable count beside the formula's, and its status."""
    if cell.formula_trainable is None:
        return cell
    with adapted(model, lora_config(cell, rows)) as peft_model:
        trainable, _ = peft_model.get_nb_trainable_parameters()
    status = data.OK if trainable == cell.formula_trainable else data.MISMATCH
    note = cell.note
    if status == data.MISMATCH:
        note = (
            f"PEFT trains {trainable:,} parameters, the closed form r*(m+n) gives "
            f"{cell.formula_trainable:,} (difference {trainable - cell.formula_trainable:+,})"
        )
    return dataclasses.replace(cell, peft_trainable=trainable, status=status, note=note)


def reference_step(model: PreTrainedModel, cell: Cell, rows: tuple[ModuleRow, ...]) -> tuple[PeftReference, str]:
    """The walk-through's PEFT step on this model: PEFT's summary line and the wrapped printout."""
    config = lora_config(cell, rows, dropout=REFERENCE_DROPOUT, alpha=REFERENCE_ALPHA)
    if any(row.kind == "experts" for row in rows):
        config.lora_dropout = 0.0  # PEFT refuses dropout on fused expert parameters
    with adapted(model, config) as peft_model:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            peft_model.print_trainable_parameters()
        trainable, all_params = peft_model.get_nb_trainable_parameters()
        printout = repr(peft_model)
    targets = ", ".join(sorted(config.target_modules)) if not isinstance(config.target_modules, str) else ALL_LINEAR
    description = (
        f"LoraConfig(r={config.r}, lora_alpha={config.lora_alpha}, target_modules=[{targets}], "
        f"lora_dropout={config.lora_dropout}, bias=\"none\", task_type=\"CAUSAL_LM\")"
    )
    reference = PeftReference(
        config=description,
        summary_line=printed.getvalue().strip(),
        trainable_params=trainable,
        all_params=all_params,
    )
    return reference, printout
