"""`reportgen report --highlight MODEL`: the cross-model charts mark and label the models named."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from reportgen.render.markdown import md_escape
from tests.conftest import Cli


def test_a_highlight_that_names_no_model_is_a_usage_error(
        tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli) -> None:
    result = run_cli.report(tmp_path, [write_config()], "--highlight", "org/elsewhere")
    assert result.exit_code == 2
    assert result.stderr.endswith("Error: --highlight 'org/elsewhere' is not a model of the models file "
                                  "(give it as the models file writes it)\n")
    assert not (tmp_path / "out").exists()


def test_the_highlighted_models_are_labelled_on_both_charts(
        tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli) -> None:
    # Three tiny Llamas on one trend: unhighlighted, only the largest ("wide") would be labelled.
    narrow = write_config("narrow", hidden_size=32)
    middle = write_config("middle", hidden_size=64)
    wide = write_config("wide", hidden_size=128)
    result = run_cli.report(tmp_path, [narrow, middle, wide], "--no-merge-check", "--quiet",
                            "--highlight", str(narrow))
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for chart in ("cross_model.svg", "cross_model_percent.svg"):
        labels = re.findall(r"<text[^>]*>([^<]*)</text>", (out / chart).read_text())
        assert "narrow" in labels and "wide" in labels and "middle" not in labels, (chart, labels)
    points = (out / "index.md").read_text().split("The labelled points")[1]
    assert f"[{md_escape(narrow)}]" in points and f"[{md_escape(middle)}]" not in points
