"""report.json and index.json keep the contract's field names (DESIGN.md), through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reportgen.cli import cli

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


def run_report(tmp_path: Path, lines: list[str], *extra: str) -> tuple[int, str, Path]:
    models = tmp_path / "models.txt"
    models.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "--models", str(models), "--out", str(out), *extra])
    return result.exit_code, result.output, out


def test_report_json_has_the_contract_fields(tmp_path: Path) -> None:
    code, output, out = run_report(tmp_path, ["HuggingFaceTB/SmolLM2-135M-Instruct"], "--no-merge-check")
    assert code == 0, output
    report = json.loads((out / "HuggingFaceTB--SmolLM2-135M-Instruct" / "report.json").read_text())
    assert report["schema_version"] == 1
    for section, fields in CONTRACT.items():
        records = report[section] if isinstance(report[section], list) else [report[section]]
        assert records, section
        for record in records:
            assert fields <= set(record), (section, fields - set(record))
    # The published total (../shared/model-configs/PUBLISHED_TOTALS.md).
    assert report["model"]["total_params"] == 134_515_008
    assert {cell["method"] for cell in report["cells"]} == {"lora"}
    assert {cell["rank"] for cell in report["cells"]} == {8, 16}
    qkvo_16 = next(c for c in report["cells"] if c["scenario"] == "qkvo" and c["rank"] == 16)
    # SmolLM2-135M: 30 layers, hidden 576, 9 heads of 64, 3 kv heads: q/o 576x576, k/v 192x576.
    assert qkvo_16["peft_trainable"] == 16 * 30 * (2 * (576 + 576) + 2 * (576 + 192))
    assert report["merge_check"]["passed"] is None


def test_a_bad_line_fails_alone_with_exit_1(tmp_path: Path) -> None:
    code, output, out = run_report(
        tmp_path, ["# a comment", "", "HuggingFaceTB/SmolLM2-135M-Instruct", "no/such-model-anywhere"],
        "--no-merge-check",
    )
    assert code == 1
    models_file = tmp_path / "models.txt"
    assert f"{models_file}:4: no/such-model-anywhere is not bundled" in output
    index = json.loads((out / "index.json").read_text())
    assert [m["id"] for m in index["models"]] == ["HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert [(f["id"], f["line"]) for f in index["failures"]] == [("no/such-model-anywhere", 4)]
    assert "Traceback" not in output


def test_a_rank_that_is_not_a_positive_integer_is_a_usage_error(tmp_path: Path) -> None:
    code, output, out = run_report(tmp_path, ["HuggingFaceTB/SmolLM2-135M-Instruct"], "--ranks", "8,0")
    assert code == 2
    assert "'0' is not a positive integer" in output
    assert not out.exists()
