"""The walk-through's tables in the terminal, for `reportgen inspect` (pandas does the layout)."""

from __future__ import annotations

import pandas as pd

from ..data import ModelReport


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def module_table(report: ModelReport) -> pd.DataFrame:
    """Module type, layers, shape, parameters, millions, and the config-derived check."""
    return pd.DataFrame(
        [
            {
                "module": row.tag,
                "role": row.role,
                "layers": row.layers,
                "shape (out x in)": row.shape_label,
                "params": _count(row.params),
                "millions": f"{row.millions:.2f}M",
                "from config": _count(row.expected_params),
                "check": {True: "agrees", False: "DIFFERS", None: "no rule"}[row.agrees],
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
                "rank": cell.rank,
                "matrices": cell.matrices,
                "targeted": f"{cell.targeted_millions:.2f}M",
                "formula": _count(cell.formula_trainable),
                "peft": _count(cell.peft_trainable),
                "% of targeted": _percent(cell.percent_of_targeted),
                "% of model": _percent(cell.percent_of_model),
                "status": cell.status if not cell.note else f"{cell.status}: {cell.note}",
            }
            for cell in report.cells
        ]
    )


def render(report: ModelReport) -> str:
    """The whole terminal printout of one model."""
    model = report.model
    lines = [
        f"{model.id}  ({model.architecture}, {model.model_type})",
        f"  config: {model.source}",
        f"  total parameters: {model.total_params:,} (tied embeddings counted once: {model.tied_embeddings})",
        f"  linear parameters in the blocks: {model.linear_params:,} ({model.linear_millions:.2f}M)",
        "",
        "Modules",
        module_table(report).to_string(index=False),
        "",
        "LoRA cells",
        cell_table(report).to_string(index=False),
    ]
    if report.peft_reference is not None:
        lines += ["", f"PEFT, {report.peft_reference.config}:", "  " + report.peft_reference.summary_line]
    return "\n".join(lines) + "\n"
