"""Every bundled config, built on the meta device, gives the model's published parameter total.

The published totals have one home: reportgen/catalog/PUBLISHED_TOTALS.md, shipped with the package
(the Hugging Face safetensors totals; GPT-2 and Falcon as module parameters with tied weights counted
once, their notes giving the checkpoint's own tensor total). reportgen itself never reads it; every
test that needs a published total reads it from the tables below.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest
import torch

from reportgen.analyse import analyse
from reportgen.build import build, build_meta_model, load_config
from reportgen.resolve import ModelSpec, catalog_ids, resolve


def _published_rows() -> dict[str, tuple[int, str]]:
    """model id -> (published total, note), from the table's rows."""
    text = (resources.files("reportgen") / "catalog" / "PUBLISHED_TOTALS.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"[\d,]+", cells[1].split(" ")[0]):
            rows[cells[0]] = (int(cells[1].split(" ")[0].replace(",", "")), cells[2])
    return rows


PUBLISHED_ROWS = _published_rows()
# model id -> its published parameter total (tied weights counted once).
PUBLISHED_TOTALS = {model_id: total for model_id, (total, _) in PUBLISHED_ROWS.items()}
# model id -> the published total of the tensors in its checkpoint: the note's figure where the
# checkpoint stores more than the module parameters (GPT-2's causal masks, Falcon's separate lm_head).
CHECKPOINT_TOTALS = {
    model_id: int(match.group(1).replace(",", "")) if (match := re.search(r"tensor total is ([\d,]+)", note)) else total
    for model_id, (total, note) in PUBLISHED_ROWS.items()
}


def test_the_catalog_is_exactly_the_published_list() -> None:
    assert catalog_ids() == sorted(PUBLISHED_TOTALS)
    # The notes are read: where the checkpoint stores more, the difference is what SOURCES.md says it is.
    extra = {model_id: CHECKPOINT_TOTALS[model_id] - total for model_id, total in PUBLISHED_TOTALS.items()}
    assert {model_id: count for model_id, count in extra.items() if count} == {
        "openai-community/gpt2": 12 * 1024 * 1024,  # 12 causal-mask buffers of 1024x1024
        "tiiuae/falcon-7b": 65_024 * 4_544,  # lm_head (vocabulary x hidden) stored once more
    }


@pytest.mark.parametrize("model_id", sorted(PUBLISHED_TOTALS))
def test_meta_build_gives_the_published_total(model_id: str) -> None:
    resolved = resolve(ModelSpec(text=model_id, origin="test"))
    config = load_config(resolved)
    model = build_meta_model(config)
    assert all(p.device == torch.device("meta") for p in model.parameters()), "no weight may be materialised"
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_TOTALS[model_id]
    rows = analyse(build(resolved)).rows
    disagreeing = [row.tag for row in rows if row.agrees is False]
    assert disagreeing == [], f"config-derived shapes disagree for {disagreeing}"
