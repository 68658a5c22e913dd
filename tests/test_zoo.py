"""The zoo sweep: every causal-LM model type of the pinned transformers, from its own default config.

Each model is built on the meta device and every default cell is counted twice,
by reportgen's closed form and by PEFT itself (the independent source). The
sweep passes when no model fails but where transformers itself cannot build its
default config, no cell has the two counts disagree, and every cell that is not
counted says why in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reportgen.data import NO_MATCH, NOT_APPLICABLE, OK
from reportgen.zoo import causal_lm_types, is_build_failure, sweep, write_zoo


def test_the_zoo_covers_the_whole_causal_lm_mapping(tmp_path: Path) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    entries = write_zoo(tmp_path, ["llama", "gpt2", "mamba"])
    assert [entry.model_type for entry in entries] == ["llama", "gpt2", "mamba"]
    assert all(entry.path is not None and entry.path.is_file() for entry in entries)
    assert entries[0].architecture == MODEL_FOR_CAUSAL_LM_MAPPING_NAMES["llama"] == "LlamaForCausalLM"
    assert set(causal_lm_types()) == set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


@pytest.mark.slow
def test_every_causal_lm_of_transformers_is_counted_exactly_or_told_why(tmp_path: Path) -> None:
    entries, result, _ = sweep(tmp_path, jobs=os.cpu_count() or 1)
    assert len(entries) == len(causal_lm_types())
    # No model silently dropped: every config written is either a report or a failure line.
    written = {str(entry.path) for entry in entries if entry.path}
    assert {report.model.id for report in result.reports} | {failure.id for failure in result.failures} == written
    ours = [failure.error for failure in result.failures if not is_build_failure(failure)]
    assert ours == [], ours
    assert all("\n" not in failure.error for failure in result.failures)
    mismatches = [(r.model.model_type, c.scenario, c.rank, c.note) for r in result.reports for c in r.mismatches]
    assert mismatches == [], mismatches
    for report in result.reports:
        assert report.status_count(OK) > 0, f"{report.model.model_type}: no cell counted by both"
        for cell in report.cells:
            if cell.status in (NOT_APPLICABLE, NO_MATCH):
                assert cell.note and "\n" not in cell.note, (report.model.model_type, cell.scenario)
            else:
                assert cell.status == OK and cell.formula_trainable == cell.peft_trainable
    # Most default configs build: the ones that do not are transformers' own failures, listed in ZOO.md.
    assert len(result.reports) >= 0.9 * sum(1 for entry in entries if entry.path)
