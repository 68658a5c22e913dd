"""What a person watching a run sees: a progress bar on a terminal, and a closing summary table."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .data import RunResult
from .pipeline import Progress

LOGGER = "reportgen"
# "models   1/4   |██████      | 00:14  HuggingFaceTB/SmolLM2-135M-Instruct" and "cells 12/20 |...| peft"
BAR_FORMAT = "{label:<6} {{n_fmt:>3}}/{{total_fmt:<3}} |{{bar:24}}| {{elapsed}}  {{desc}}"


class ProgressDisplay:
    """Two bars on stderr (models, and the current model's cells with its stage), and each model's time."""

    def __init__(self, total_models: int, stream: TextIO, enabled: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.reused: set[str] = set()  # models served from the result cache
        self._model = ""
        options = {"file": stream, "disable": not enabled, "dynamic_ncols": True, "leave": False}
        self._models = tqdm(total=total_models, position=0, bar_format=BAR_FORMAT.format(label="models"), **options)
        self._cells = tqdm(total=0, position=1, bar_format=BAR_FORMAT.format(label="cells"), **options)

    def hooks(self) -> Progress:
        """The pipeline callbacks that drive this display."""
        return Progress(
            on_stage=self._on_stage,
            on_cell=self._on_cell,
            on_cells=self._on_cells,
            on_model_start=self._on_model_start,
            on_model_end=self._on_model_end,
            on_model_reused=self._on_model_reused,
        )

    def close(self) -> None:
        """Clear the bars from the terminal."""
        self._cells.close()
        self._models.close()

    def _on_model_start(self, model: str) -> None:
        self._model = model
        self._models.set_description_str(printable(model))
        self._cells.reset(total=0)

    def _on_stage(self, model: str, stage: str) -> None:
        self._cells.set_description_str(stage)

    def _on_cells(self, total: int) -> None:
        self._cells.reset(total=total)
        self._cells.set_description_str("peft: formula and PEFT count per cell")

    def _on_cell(self) -> None:
        self._cells.update()

    def _on_model_end(self, model: str, ok: bool, seconds: float) -> None:
        self.seconds[model] = seconds
        self._models.update()

    def _on_model_reused(self, model: str, seconds: float) -> None:
        self.seconds[model] = seconds
        self.reused.add(model)
        self._models.set_description_str(f"reused {printable(model)}")
        self._models.update()


@contextlib.contextmanager
def showing(total_models: int, stream: TextIO, enabled: bool) -> Iterator[ProgressDisplay]:
    """A progress display for the duration of the block; log lines are printed above the bars."""
    display = ProgressDisplay(total_models, stream, enabled)
    try:
        with logging_redirect_tqdm(loggers=[logging.getLogger(LOGGER)]):
            yield display
    finally:
        display.close()


def configure_logging(stream: TextIO, quiet: bool, verbose: bool) -> None:
    """reportgen's own log lines on stream: errors only with quiet, each stage's time with verbose."""
    logger = logging.getLogger(LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    logger.propagate = False


def summary_rows(result: RunResult, seconds: dict[str, float], reused: set[str] | None = None) -> list[dict[str, str]]:
    """One row per model: total params, cells, checks passed, time; in the order the run met them.

    With ``reused`` (the models served from the result cache, when any was) a last column says
    which were reused and which recomputed.
    """
    rows: dict[str, dict[str, str]] = {}
    for report in result.reports:
        passed, run = report.checks
        rows[report.model.id] = {
            "model": report.model.id,
            "total params": f"{report.model.total_params:,}",
            "cells": f"{len(report.cells)}" + (f" ({report.uncounted_label})" if report.uncounted_label else ""),
            "checks passed": f"{passed}/{run}",
            "time": _seconds(seconds, report.model.id),
        }
        if reused:
            rows[report.model.id]["cache"] = "reused" if report.model.id in reused else "recomputed"
    for failure in result.failures:
        rows[failure.id] = {
            "model": failure.id, "total params": "-", "cells": "-", "checks passed": "failed",
            "time": _seconds(seconds, failure.id),
        } | ({"cache": "recomputed"} if reused else {})
    order = {model: index for index, model in enumerate(seconds)}
    return sorted(rows.values(), key=lambda row: order.get(row["model"], len(order)))


def summary_table(result: RunResult, seconds: dict[str, float], reused: set[str] | None = None) -> str:
    """The closing table, as aligned text."""
    rows = summary_rows(result, seconds, reused)
    if not rows:
        return ""
    columns = list(rows[0])
    widths = {column: max(len(column), *(len(row[column]) for row in rows)) for column in columns}
    numeric = {"total params", "cells", "checks passed", "time"}

    def line(cells: dict[str, str]) -> str:
        parts = [cells[c].rjust(widths[c]) if c in numeric else cells[c].ljust(widths[c]) for c in columns]
        return "  ".join(parts).rstrip()

    header = line({column: column for column in columns})
    rule = "  ".join("-" * widths[column] for column in columns)
    return "\n".join([header, rule, *(line(row) for row in rows)]) + "\n"


def _seconds(seconds: dict[str, float], model_id: str) -> str:
    return f"{seconds[model_id]:.1f} s" if model_id in seconds else "-"


def printable(text: str) -> str:
    """text with control characters escaped, so a crafted model id cannot drive the terminal."""
    return "".join(
        char if char.isprintable() or char == " " else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
