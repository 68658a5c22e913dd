"""The TOML study matrix and the --methods/--matrix options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reportgen.errors import UsageError
from reportgen.matrix import Matrix, load_matrix, parse_matrix
from reportgen.variants import BUILTIN_VARIANTS

if TYPE_CHECKING:
    from tests.conftest import Cli

STUDY = """
ranks = [3, 12]
methods = ["lora", "dora", "all_bias"]

[scenario.attn_mlp]
targets = ["q_proj", "down_proj"]

[method.all_bias]
method = "lora"
bias = "all"
rank_pattern = { q_proj = 4 }
"""


def test_default_matrix_is_the_walkthroughs() -> None:
    assert Matrix().ranks == (8, 16)
    assert Matrix().variants == (BUILTIN_VARIANTS["lora"],)
    assert parse_matrix({}) == Matrix()


def test_matrix_file_declares_ranks_methods_options_and_scenarios(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(STUDY)
    matrix = load_matrix(path)
    assert matrix.ranks == (3, 12)
    assert [v.name for v in matrix.variants] == ["lora", "dora", "all_bias"]
    assert matrix.variants[2].get("bias") == "all" and matrix.variants[2].get("rank_pattern") == {"q_proj": 4}
    assert matrix.scenarios[0].targets == ("q_proj", "down_proj")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rank = [8]", "unknown key rank"),
        ("ranks = [0]", "ranks must be a list of positive integers"),
        ('methods = ["qlora"]', "method 'qlora' is neither built in"),
        ('[method.x]\nmethod = "lora"\nuse_doura = true', "lora has no option use_doura"),
        ("[scenario.s]\ntargets = []", "scenario 's' needs targets"),
        ("ranks = [", "not valid TOML"),
    ],
)
def test_bad_matrix_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "study.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_matrix(path)


def test_report_with_matrix_writes_every_method_and_the_explanation(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    (tmp_path / "study.toml").write_text(STUDY)
    result = run_cli.report(tmp_path, [write_config()], "--matrix", tmp_path / "study.toml", "--no-merge-check", "-q")
    assert result.exit_code == 0, result.output
    report = run_cli.report_json(tmp_path / "out")
    assert {cell["method"] for cell in report["cells"]} == {"lora", "dora", "all_bias"}
    assert {cell["rank"] for cell in report["cells"]} == {3, 12}
    assert all(cell["status"] != "mismatch" for cell in report["cells"])
    assert [line["label"] for line in report["explanation"]][0] == "parameters, tied weights counted once"
    attn_mlp = [c for c in report["cells"] if c["scenario"] == "attn_mlp" and c["method"] == "lora" and c["rank"] == 3]
    # q_proj 3*(64+64) and down_proj 3*(64+96), two layers each.
    assert attn_mlp[0]["peft_trainable"] == 2 * (3 * 128 + 3 * 160)


def test_inspect_methods_option_and_its_errors(write_config: Callable[..., Path], run_cli: Cli) -> None:
    config = write_config(family="gpt2")
    result = run_cli("inspect", config, "--methods", "lora,vera", "--ranks", "8")
    assert result.exit_code == 0, result.output
    assert "vera" in result.output and "Why the counts differ" in result.output
    # VeRA trains per adapted matrix only its scaling vectors: d (r) and b (out). Shrunken GPT-2 (hidden 64,
    # 2 layers), c_attn (out 192) alone: 2 layers x (8 + 192).
    vera_c_attn = [line for line in result.output.splitlines() if line.split()[:2] == ["c_attn", "vera"]]
    assert vera_c_attn and f"{2 * (8 + 192):,}" in vera_c_attn[0].split()
    bad = run_cli("inspect", config, "--methods", "lorra")
    assert bad.exit_code == 2
    assert "unknown method 'lorra'" in bad.output
