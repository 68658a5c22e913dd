"""The walk-through's tables in the terminal, for `reportgen inspect` (pandas does the layout)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ..data import ModelReport
from ..formatting import count, gb_figure, mega, pct, signed


def module_table(report: ModelReport) -> pd.DataFrame:
    """Module type, layers, shape, parameters, millions, and the config-derived check."""
    return pd.DataFrame(
        [
            {
                "module": row.tag,
                **({"part": row.part} if len(report.parts) > 1 else {}),
                "role": row.role,
                "layers": row.layers,
                "shape (out x in)": row.shape_label,
                "params": count(row.params),
                "millions": mega(row.millions),
                "from config": count(row.expected_params),
                "check": row.check_label,
            }
            for row in report.modules
        ]
    )


def cell_table(report: ModelReport) -> pd.DataFrame:
    """Scenario x rank: matrices, targeted millions, trainables by formula and by PEFT, percentages."""
    return pd.DataFrame(
        [
            {
                "scenario": cell.scenario,
                "method": cell.method,
                "rank": cell.rank,
                "matrices": cell.matrices,
                "targeted": mega(cell.targeted_millions),
                "formula": count(cell.formula_trainable),
                "peft": count(cell.peft_trainable),
                "% of targeted": pct(cell.percent_of_targeted),
                "% of model": pct(cell.percent_of_model),
                "status": cell.note or cell.status,
            }
            for cell in report.cells
        ]
    )


def memory_table(report: ModelReport) -> pd.DataFrame:
    """full, lora and qlora at the chosen scenario and rank: each component in GB, and the GPUs it fits."""
    return pd.DataFrame(
        [
            {
                "method": row.method,
                "scenario": row.scenario,
                "rank": "-" if row.rank is None else row.rank,
                "trainable": count(row.trainable_params),
                "weights GB": gb_figure(row.weight_bytes),
                "gradients GB": gb_figure(row.gradient_bytes),
                "optimizer GB": gb_figure(row.optimizer_bytes),
                "activations GB": gb_figure(row.activation_bytes),
                "total GB": gb_figure(row.total_bytes),
                "fits": row.fits_label,
            }
            for row in report.memory_headline
        ]
    )


def explanation_table(report: ModelReport) -> pd.DataFrame:
    """Every way of counting the model's parameters, the difference from the unique count, and why."""
    return pd.DataFrame(
        [
            {"count": line.label, "parameters": count(line.count), "difference": signed(line.difference),
             "why": line.why}
            for line in report.explanation
        ]
    )


def _left(column: pd.Series) -> Callable[[object], str]:
    """A to_string formatter that left-aligns a text column."""
    width = int(column.astype(str).str.len().max())
    return lambda value: str(value).ljust(width)


def memory_lines(report: ModelReport) -> list[str]:
    """The memory table and every assumption behind it."""
    if not report.memory_headline:
        return []
    lines = ["", "Training memory (GB = 1e9 bytes)", memory_table(report).to_string(index=False)]
    others = len(report.memory) - len(report.memory_headline)
    if others:
        lines.append(f"  ({others} more lora/qlora rows, one per scenario and rank, are in report.json)")
    checked = report.memory_context.validation
    if checked:
        lines += ["Checked (benchmarks/MEMORY.md)", f"  {checked.cpu_label}", f"  {checked.gpu_label}"]
    lines.append("Assumptions")
    lines += [f"  {item.name} = {item.value}: {item.statement} [{item.source}]" for item in report.memory_assumptions]
    return lines


def render(report: ModelReport) -> str:
    """The whole terminal printout of one model."""
    model = report.model
    lines = [
        f"{model.id}  ({model.architecture}, {model.model_type})",
        f"  config: {model.source}",
        *([f"  built: {model.build_note}"] if model.build_note else []),
        f"  total parameters: {count(model.total_params)} (tied embeddings counted once: {model.tied_embeddings})",
        f"  linear parameters in the blocks: {count(model.linear_params)} ({mega(model.linear_millions)})",
        "",
        "Modules",
        module_table(report).to_string(index=False),
        "",
        "LoRA cells",
        cell_table(report).to_string(index=False),
    ]
    if report.mismatches:
        lines += ["", f"!!! {len(report.mismatches)} cell(s) where the closed form and PEFT DISAGREE:"]
        lines += [f"!!!   {c.scenario} {c.method} r={c.rank}: {c.note}" for c in report.mismatches]
    if report.explanation:
        table = explanation_table(report)
        # Text reads from the left: the label and the reason are left-aligned, the numbers right-aligned.
        left = {column: _left(table[column]) for column in ("count", "why")}
        with pd.option_context("display.max_colwidth", 200):
            text = table.to_string(index=False, formatters=left, justify="left")
            lines += ["", "Why the counts differ", *(line.rstrip() for line in text.splitlines())]
    if report.peft_reference is not None:
        lines += ["", f"PEFT, {report.peft_reference.config}:", "  " + report.peft_reference.summary_line]
    lines += memory_lines(report)
    if report.warnings:  # kept off stderr while the model was built; the report lists them the same way
        lines += ["", "Warnings (what the libraries, and reportgen of the options given, warned while this model "
                  "was built and counted)", *(f"  {warning}" for warning in report.warnings)]
    return "\n".join(lines) + "\n"
