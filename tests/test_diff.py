"""`reportgen diff OLD NEW` through the real CLI, on report folders the real `reportgen report` wrote.

OLD: the tiny Llama, the tiny GPT-2 and the tiny Qwen2 at ranks 8 and 16. NEW, written after
editing the Llama's config (intermediate_size 96 -> 128) and breaking Qwen2's: the Llama changed, Qwen2
failed, GPT-2 dropped, the tiny Mistral added, ranks 8, 16 and 32. Every expected figure is counted by
hand from the tiny configs' widths (tests/families.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reportgen.diff import diff_folders
from reportgen.render.diffreport import diff_markdown
from tests.families import TINY_LLAMA_PARAMS, tiny_config

if TYPE_CHECKING:
    from tests.conftest import Cli

USAGE = "Usage: reportgen diff [OPTIONS] OLD NEW\nTry 'reportgen diff --help' for help.\n\n"
HIDDEN, OLD_FFN, NEW_FFN, LAYERS = 64, 96, 128, 2
# gate, up and down each grow by hidden * (128 - 96) per layer.
FFN_GROWTH = 3 * LAYERS * HIDDEN * (NEW_FFN - OLD_FFN)  # 12,288


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, run_cli: Cli) -> dict[str, Path]:
    """OLD and NEW report folders (see the module docstring), and the config folders they were written from."""
    root = tmp_path_factory.mktemp("diff")
    paths = {}
    for family in ("llama", "gpt2", "qwen2", "mistral"):
        paths[family] = root / family
        paths[family].mkdir()
        (paths[family] / "config.json").write_text(json.dumps(tiny_config(family)))
    old = run_cli.report(root, [paths["llama"], paths["gpt2"], paths["qwen2"]], "--no-merge-check",
                         out=root / "old")
    assert old.exit_code == 0, old.output
    (paths["llama"] / "config.json").write_text(json.dumps(tiny_config("llama", intermediate_size=NEW_FFN)))
    (paths["qwen2"] / "config.json").write_text(json.dumps(tiny_config("qwen2", model_type="no_such_type")))
    new = run_cli.report(root, [paths["llama"], paths["qwen2"], paths["mistral"]], "--no-merge-check",
                         "--ranks", "8,16,32", out=root / "new")
    assert new.exit_code == 1, new.output  # Qwen2 failed; the others are written
    return {"old": root / "old", "new": root / "new", **paths}


def changes_of(payload: dict[str, Any], model: str) -> dict[tuple[str, str], dict[str, Any]]:
    """A model's changes in the JSON output, by (where, field)."""
    (entry,) = [entry for entry in payload["models"] if entry["id"] == model]
    return {(change["where"], change["field"]): change for change in entry["changes"]}


def test_diff_names_models_ranks_and_changed_counts(folders: dict[str, Path], run_cli: Cli) -> None:
    llama, gpt2, qwen2, mistral = (str(folders[name]) for name in ("llama", "gpt2", "qwen2", "mistral"))
    result = run_cli("diff", folders["old"], folders["new"])
    assert result.exit_code == 0  # without --exit-code a diff is not a failure
    text = result.stdout
    assert text.startswith(f"### reportgen diff\n\n`{folders['old']}` → `{folders['new']}`: "
                           "2 models in both, 1 added, 1 removed; 2 with changes.\n")
    # Changes of status come first: Qwen2 went from ok to failed.
    status = text.index("#### ⚠ Changes of status")
    assert f"| `{qwen2}` | model | `status` | ok | failed |  |" in text
    assert status < text.index("#### Models added") < text.index("#### Models removed")
    assert f"- `{mistral}`: ok, " in text
    assert f"- `{gpt2}`: ok, " in text.split("#### Models removed")[1]
    assert "| ranks |  | 8, 16 | 8, 16, 32 |  |" in text
    # The Llama's totals, module rows and cells, old -> new with the difference, counted by hand.
    new_total = TINY_LLAMA_PARAMS + FFN_GROWTH
    assert (f"| model | `total_params` | {TINY_LLAMA_PARAMS:,} | {new_total:,} | +{FFN_GROWTH:,} "
            f"({100 * FFN_GROWTH / TINY_LLAMA_PARAMS:+.1f}%) |") in text
    gate_old, gate_new = LAYERS * OLD_FFN * HIDDEN, LAYERS * NEW_FFN * HIDDEN  # 12,288 -> 16,384
    assert f"| module gate\\_proj · language model | `params` | {gate_old:,} | {gate_new:,} | +4,096 (+33.3%) |" in text
    # LoRA on gate_proj at r=8: 8 * (64 + 96) * 2 layers = 2,560 -> 8 * (64 + 128) * 2 = 3,072.
    assert "| cell gate\\_proj · lora · r=8 | `formula_trainable` | 2,560 | 3,072 | +512 (+20.0%) |" in text
    # A new rank is a new cell: qv_only at r=32 is q 32*(64+64)*2 + v 32*(64+32)*2 = 8,192 + 6,144.
    assert "| cell qv\\_only · lora · r=32 | `formula_trainable` | - | 14,336 | added |" in text
    # The module rows whose shapes did not change are not listed.
    assert "module q\\_proj" not in text


def test_exit_code_is_zero_for_the_same_folder_and_one_for_a_changed_one(
    folders: dict[str, Path], run_cli: Cli, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(folders["old"], copy)
    same = run_cli("diff", folders["old"], copy, "--exit-code")
    assert same.exit_code == 0
    assert same.stdout.endswith(": No changes: 3 models in both, every figure the same.\n")
    changed = run_cli("diff", folders["old"], folders["new"], "--exit-code")
    assert changed.exit_code == 1
    assert changed.stdout == run_cli("diff", folders["old"], folders["new"]).stdout  # and deterministic


def test_json_and_out_file(folders: dict[str, Path], run_cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "diff.json"
    result = run_cli("diff", folders["old"], folders["new"], "--format", "json", "--out", target)
    assert result.exit_code == 0 and result.stdout == ""
    payload = json.loads(target.read_text())
    assert payload["changed"] is True
    assert [line["id"] for line in payload["added"]] == [str(folders["mistral"])]
    assert [line["id"] for line in payload["removed"]] == [str(folders["gpt2"])]
    assert [(c["model"], c["field"], c["old"], c["new"]) for c in payload["status"]] == [
        (str(folders["qwen2"]), "status", "ok", "failed")]
    total = changes_of(payload, str(folders["llama"]))[("model", "total_params")]
    assert (total["old"], total["new"], total["difference"]) == (TINY_LLAMA_PARAMS, TINY_LLAMA_PARAMS + FFN_GROWTH,
                                                                FFN_GROWTH)
    assert {"where": "ranks", "old": [8, 16], "new": [8, 16, 32]}.items() <= next(
        change for change in payload["study"] if change["where"] == "ranks").items()
    markdown = tmp_path / "diff.md"
    assert run_cli("diff", folders["old"], folders["new"], "--out", markdown).exit_code == 0
    assert markdown.read_text() == run_cli("diff", folders["old"], folders["new"]).stdout


def test_two_schema_versions_are_compared_on_the_fields_both_have(
    folders: dict[str, Path], run_cli: Cli, tmp_path: Path
) -> None:
    """A later schema adds fields (a list, a field per module row) and drops one; status changes first."""
    newer = tmp_path / "schema-2"
    shutil.copytree(folders["old"], newer)
    index = json.loads((newer / "index.json").read_text())
    index["schema_version"] = 2
    llama = str(folders["llama"])
    entry = next(entry for entry in index["models"] if entry["id"] == llama)
    entry["status"] = "mismatch"
    (newer / "index.json").write_text(json.dumps(index))
    for model in index["models"]:
        report = json.loads((newer / model["report"]).read_text())
        report["schema_version"] = 2
        report["advisories"] = ["a note a later version records"]
        report.pop("explanation")
        for row in report["modules"]:
            row["activation_bytes_per_token"] = 128
        if model["id"] == llama:
            cell = next(cell for cell in report["cells"] if (cell["scenario"], cell["rank"]) == ("qkvo", 8))
            cell["peft_trainable"] += 8
            cell["status"] = "mismatch"
            report["merge_check"]["status"] = "failed"
        (newer / model["report"]).write_text(json.dumps(report))
    result = run_cli("diff", folders["old"], newer, "--exit-code")
    assert result.exit_code == 1
    text = result.stdout
    assert ("> **Note:** the folders have different schema versions (1 in OLD, 2 in NEW): "
            "they are compared on the fields both have.\n"
            "> Only in OLD's schema, not compared: `explanation`.\n"
            "> Only in NEW's schema, not compared: `advisories`, `modules[].activation_bytes_per_token`.\n") in text
    # qkvo at r=8 on the tiny Llama: q 8*(64+64)*2 + k 8*(64+32)*2 + v the same + o as q = 7,168; PEFT "counted" 8 more.
    assert text.index("#### ⚠ Changes of status") < text.index(f"#### `{llama}`")
    for row in (f"| `{llama}` | model | `status` | ok | mismatch |  |",
                f"| `{llama}` | merge check | `status` | skipped | failed |  |",
                f"| `{llama}` | cell qkvo · lora · r=8 | `status` | ok | mismatch |  |",
                "| cell qkvo · lora · r=8 | `peft_trainable` | 7,168 | 7,176 | +8 (+0.1%) |"):
        assert row in text
    assert "a warning a later version records" not in text  # noted, never compared
    assert "| `activation_bytes_per_token` |" not in text


@pytest.mark.parametrize("case, error", [
    ("missing", "NEW: {path} does not exist (give a folder that `reportgen report` wrote)"),
    ("file", "NEW: {path} is not a folder (give a folder that `reportgen report` wrote)"),
    ("empty", "NEW: {path} is not a report folder: it has no index.json"),
    ("bad-json", "NEW: {path}/index.json is not valid JSON (Expecting value at line 1)"),
    ("not-an-index", "NEW: {path}/index.json is not a reportgen index (no list of models with id, slug and report)"),
    ("no-report", "NEW: {path}/m/report.json (model m) is missing: the folder is not whole"),
    ("escape", "NEW: {path}/index.json points model 'm' outside the folder ('../m/report.json')"),
    ("slug", "NEW: {path}/index.json gives model 'm' the folder '../m', which is not a folder name reportgen writes"),
])
def test_bad_folders_are_one_line_usage_errors(
    folders: dict[str, Path], run_cli: Cli, tmp_path: Path, case: str, error: str
) -> None:
    path = tmp_path / case
    index = {"models": [{"id": "m", "slug": "m", "report": "m/report.json"}]}
    if case == "file":
        path.write_text("not a folder")
    elif case != "missing":
        path.mkdir()
    if case == "bad-json":
        (path / "index.json").write_text("")
    elif case == "not-an-index":
        (path / "index.json").write_text('{"models": "none"}')
    elif case in ("no-report", "escape", "slug"):
        if case == "escape":
            index["models"][0]["report"] = "../m/report.json"
        if case == "slug":
            index["models"][0]["slug"] = "../m"
        (path / "index.json").write_text(json.dumps(index))
    result = run_cli("diff", folders["old"], path)
    assert result.exit_code == 2
    assert result.stderr == f"{USAGE}Error: {error.format(path=path)}\n"
    assert result.stdout == ""


def test_a_long_diff_is_cut_to_fit_a_comment(folders: dict[str, Path]) -> None:
    diff = diff_folders(folders["old"], folders["new"])
    full = diff_markdown(diff)
    cut = diff_markdown(diff, limit=len(full) // 2)
    assert len(cut) < len(full) // 2
    assert "more changes of this model: `reportgen diff --format json` lists every one." in cut
    assert cut.split("\n#### ")[:4] == full.split("\n#### ")[:4]  # status, models and study stay whole
