"""report.json and index.json keep the contract's field names (DESIGN.md), through the real CLI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.test_published_totals import PUBLISHED_TOTALS

if TYPE_CHECKING:
    from tests.conftest import Cli

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

# DESIGN.md, "report.json holds at least".
CONTRACT = {
    "model": {"id", "source", "architecture", "model_type", "total_params", "linear_params", "tied_embeddings"},
    "modules": {"tag", "layers", "shape", "params", "expected_params"},
    "cells": {
        "scenario", "targets", "rank", "method", "matrices", "targeted_params",
        "formula_trainable", "peft_trainable", "percent_of_targeted", "percent_of_model",
    },
    "merge_check": {"passed", "max_abs_diff", "tolerance", "materialised", "device", "params_after_merge"},
    "environment": {"python", "torch", "transformers", "peft"},
}


def test_report_and_index_json_have_the_contract_fields(tmp_path: Path, run_cli: Cli) -> None:
    result = run_cli.report(tmp_path, ["# a comment", "", SMOLLM2, "no/such-model-anywhere"], "--no-merge-check")
    out = tmp_path / "out"
    # The bad line fails alone, exit status 1; the good model is reported.
    assert result.exit_code == 1, result.output
    assert f"{tmp_path / 'models.txt'}:4: no/such-model-anywhere is not bundled" in result.output
    assert "Traceback" not in result.output
    index = run_cli.index(out)
    assert [m["id"] for m in index["models"]] == [SMOLLM2]
    assert [(f["id"], f["line"]) for f in index["failures"]] == [("no/such-model-anywhere", 4)]

    report = run_cli.report_json(out, SMOLLM2)
    assert (out / "HuggingFaceTB--SmolLM2-135M-Instruct" / "report.json").is_file()
    assert report["schema_version"] == 1
    for section, fields in CONTRACT.items():
        records = report[section] if isinstance(report[section], list) else [report[section]]
        assert records, section
        for record in records:
            assert fields <= set(record), (section, fields - set(record))
    # The published total (reportgen/catalog/PUBLISHED_TOTALS.md).
    assert report["model"]["total_params"] == PUBLISHED_TOTALS[SMOLLM2]
    assert {cell["method"] for cell in report["cells"]} == {"lora"}
    assert {cell["rank"] for cell in report["cells"]} == {8, 16}
    qkvo_16 = next(c for c in report["cells"] if c["scenario"] == "qkvo" and c["rank"] == 16)
    # SmolLM2-135M: 30 layers, hidden 576, 9 heads of 64, 3 kv heads: q/o 576x576, k/v 192x576.
    assert qkvo_16["peft_trainable"] == 16 * 30 * (2 * (576 + 576) + 2 * (576 + 192))
    assert report["merge_check"]["passed"] is None
