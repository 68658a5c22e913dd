"""Untrusted input and interrupted runs: no remote code unasked, no write outside --out, no half report."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reportgen.errors import ReportgenError
from reportgen.output import MAX_SLUG, inside, slugify, unique_slugs, write_file

if TYPE_CHECKING:
    from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[1]
SAFE_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- remote code -------------------------------------------------------------------------------

def remote_code_model(write_config: Callable[..., Path], marker: Path, model_type: str) -> Path:
    """The tiny Llama's folder, its config naming its own code (auto_map); importing that code writes marker."""
    folder = write_config("evil", model_type=model_type, auto_map={
        "AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"})
    touch = f"from pathlib import Path\nPath({str(marker)!r}).write_text('remote code ran')\n"
    (folder / "configuration_evil.py").write_text(
        touch + "from transformers import LlamaConfig\n\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil_llama'\n"
    )
    (folder / "modeling_evil.py").write_text(
        touch + "from transformers import LlamaForCausalLM\nfrom .configuration_evil import EvilConfig\n\n"
        "class EvilForCausalLM(LlamaForCausalLM):\n    config_class = EvilConfig\n"
    )
    return folder


def test_remote_code_never_runs_without_the_flag(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    marker = tmp_path / "marker"
    model = remote_code_model(write_config, marker, "evil_llama")
    result = run_cli.report(tmp_path, [model])
    models = tmp_path / "models.txt"
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {models}:1: {model}: model_type 'evil_llama' needs the model's own Python code (auto_map); "
        "reportgen does not run remote code unless you pass --trust-remote-code\n"
    )
    assert not marker.exists()


def test_a_known_model_type_with_auto_map_is_built_without_its_code(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    marker = tmp_path / "marker"
    model = remote_code_model(write_config, marker, "llama")
    result = run_cli.report(tmp_path, [model], "--no-merge-check")
    assert result.exit_code == 0, result.output
    assert not marker.exists()
    report = run_cli.report_json(tmp_path / "out")
    assert report["model"]["architecture"] == "LlamaForCausalLM"
    assert report["model"]["build_note"] == (
        "the config names its own code (auto_map), which did not run (--trust-remote-code was not given); "
        "built transformers' own LlamaForCausalLM instead"
    )


def test_with_the_flag_the_remote_code_does_run(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    """The control: the same folder's code runs once allowed, so the tests above can fail."""
    marker = tmp_path / "marker"
    model = remote_code_model(write_config, marker, "evil_llama")
    models = tmp_path / "models.txt"
    models.write_text(f"{model}\n")
    out = tmp_path / "out"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HF_MODULES_CACHE": str(tmp_path / "mods")}
    done = subprocess.run(
        [sys.executable, "-m", "reportgen", "report", "--models", str(models), "--out", str(out),
         "--no-merge-check", "--trust-remote-code"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "remote code ran"
    assert run_cli.report_json(out)["model"]["architecture"] == "EvilForCausalLM"


# --- slugs and the output folder ---------------------------------------------------------------

NASTY_IDS = [
    "..", ".", "../../etc/passwd", "/etc/passwd", "/", "~/.ssh/config.json", "a/../../b", "C:\\Windows\\x",
    "bad\x1b[31mred\x00nul\nline", "é/ü-模型", "x" * 500, "org/" + "y" * 300, "con", "NUL.json", "-rf", ".hidden",
    "", " ", "a" + "\u202e" + "b",
]


@pytest.mark.parametrize("model_id", NASTY_IDS)
def test_a_slug_stays_a_plain_name_inside_the_output_folder(tmp_path: Path, model_id: str) -> None:
    slug = slugify(model_id)
    assert SAFE_SLUG.match(slug), slug
    assert len(slug) <= MAX_SLUG
    assert slug.split(".")[0].lower() not in {"con", "prn", "aux", "nul"}
    assert inside(tmp_path, f"{slug}/report.json").parent.parent == tmp_path.resolve()


def test_different_ids_never_share_a_slug_even_ignoring_case() -> None:
    ids = [
        "org/model", "Org/Model", "org--model", "ORG--MODEL", "x", "x-2", "X", "x/", "x//",
        "meta-llama/Llama-3.2-1B", "meta_llama/Llama-3.2-1B", "meta llama/Llama-3.2-1B",
        "z" * 200 + "1", "z" * 200 + "2", "a\nb", "a\tb", "a b",
    ]
    slugs = unique_slugs(ids)
    assert len({slug.lower() for slug in slugs}) == len(ids)
    # An id that reads the same as its folder name keeps it, as the docs and links expect.
    assert slugs[ids.index("meta-llama/Llama-3.2-1B")] == "meta-llama--Llama-3.2-1B"
    assert unique_slugs(["meta-llama/Llama-3.2-1B"]) == ["meta-llama--Llama-3.2-1B"]


def test_an_id_that_reads_like_another_ids_hashed_slug_still_gets_its_own() -> None:
    first = unique_slugs(["x", "X"])  # both hashed: x-<hash of "x">, X-<hash of "X">
    impostor = first[0]  # a real id that happens to spell that slug
    slugs = unique_slugs(["x", "X", impostor])
    assert len({slug.lower() for slug in slugs}) == 3


def test_the_same_id_twice_still_gets_two_folders() -> None:
    slugs = unique_slugs(["org/model", "org/model"])
    assert slugs[0].lower() != slugs[1].lower()


@pytest.mark.parametrize("relative", ["../x", "/etc/passwd", "a/../../x", "..", "link/x"])
def test_inside_refuses_paths_that_leave_the_output_folder(tmp_path: Path, relative: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    with pytest.raises(ReportgenError, match="would leave the output folder"):
        write_file(out, relative, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_crafted_id_cannot_write_outside_or_drive_the_terminal(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    write_config("cfg")
    monkeypatch.chdir(work)
    models = work / "models.txt"
    models.write_text("../../cfg/config.json\nevil\x1b[2J/../../x\n")
    result = run_cli("report", "--models", "models.txt", "--out", "out", "--no-merge-check")
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert "evil\\x1b[2J/../../x does not exist" in result.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    slug = unique_slugs(["../../cfg/config.json"])[0]
    # Nothing lands outside out/ (the rendered site adds pages and charts inside it).
    assert [path for path in written if not path.startswith("work/deep/out/")] == [
        "cfg/config.json", "work/deep/models.txt"]
    assert {f"work/deep/out/{slug}/report.json", f"work/deep/out/{slug}/report.html",
            "work/deep/out/index.json", "work/deep/out/index.html"} <= set(written)


# --- interrupted runs --------------------------------------------------------------------------

HOLD = """
import os, sys, time
from pathlib import Path
import reportgen.output as output
commit, count = output._commit, 0

def held(temporary, target):
    # Stop on the Nth commit, the new file written in full under its temporary name, not yet in place.
    global count
    count += 1
    if count == int(os.environ["HOLD_AT"]):
        Path(os.environ["HOLD_SIGNAL"]).write_text(str(target))
        time.sleep(300)
    commit(temporary, target)

output._commit = held
from reportgen.cli import cli
cli(sys.argv[1:], prog_name="reportgen")
"""


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file in out and its bytes, reportgen's hidden lock file aside."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != ".reportgen.lock"}


@pytest.fixture
def previous_report(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> tuple[Path, Path, dict[str, bytes]]:
    """A complete report of two models (ranks 8,16), with a user's own files in the folder."""
    result = run_cli.report(tmp_path, [write_config("one"), write_config("two", num_hidden_layers=3)],
                            "--no-merge-check")
    assert result.exit_code == 0, result.output
    models, out = tmp_path / "models.txt", tmp_path / "out"
    (out / "NOTES.md").write_text("the user's own file")
    first = run_cli.index(out)["models"][0]["slug"]
    (out / first / "mine.txt").write_text("also the user's")
    return models, out, _snapshot(out)


def _interrupt(models: Path, out: Path, sig: int, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Re-run the real CLI (ranks 4 now, so files change) and send sig while the 2nd file is being put in place."""
    signal_file = tmp_path / "holding"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "HOLD_AT": "2",
                        "HOLD_SIGNAL": str(signal_file)}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, "report", "--models", str(models), "--out", str(out), "--no-merge-check",
         "--ranks", "4"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while not signal_file.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached its second file"
        time.sleep(0.1)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), Path(signal_file.read_text())


def _assert_whole(out: Path, before: dict[str, bytes], held: Path) -> None:
    """Every report file parses, the one held mid-commit is the old one, the user's files are untouched."""
    # A run's temporary files and staging folders are hidden: what a reader of the folder sees is the rest.
    after = {name: data for name, data in _snapshot(out).items()
             if not any(part.startswith(".") for part in name.split("/"))}
    assert sorted(after) == sorted(before)
    for name, data in after.items():
        if name.endswith(".json"):
            json.loads(data)
    # The held file was being written into its model's staging folder (.reportgen-staging-SLUG-XXXXXXXX/):
    # the model's folder still holds the previous run's file of that name.
    slug = held.parent.name.removeprefix(".reportgen-staging-").rpartition("-")[0]
    assert held.parent.parent == out.resolve() and slug
    assert after[f"{slug}/{held.name}"] == before[f"{slug}/{held.name}"]
    assert after["NOTES.md"] == b"the user's own file"


def _temporaries(out: Path) -> list[Path]:
    return sorted(out.rglob(".*.tmp"))


def test_ctrl_c_midway_leaves_the_previous_report_whole(
    tmp_path: Path, previous_report: tuple[Path, Path, dict[str, bytes]]
) -> None:
    models, out, before = previous_report
    done, held = _interrupt(models, out, signal.SIGINT, tmp_path)
    assert done.returncode == 130
    assert done.stderr == f"\ninterrupted: every file in {out}/ is left whole, as it was or as this run wrote it\n"
    _assert_whole(out, before, held)
    assert _temporaries(out) == []


def test_a_killed_run_leaves_whole_files_and_the_next_run_clears_its_debris(
    tmp_path: Path, previous_report: tuple[Path, Path, dict[str, bytes]], run_cli: Cli
) -> None:
    models, out, before = previous_report
    done, held = _interrupt(models, out, signal.SIGKILL, tmp_path)
    assert done.returncode == -signal.SIGKILL
    _assert_whole(out, before, held)
    stray = _temporaries(out)
    assert len(stray) == 1 and stray[0].parent == held.parent  # the new file, complete but never put in place
    result = run_cli("report", "--models", models, "--out", out, "--no-merge-check")
    assert result.exit_code == 0, result.output
    assert _temporaries(out) == []
    assert _snapshot(out) == before  # the same study again: the same bytes, the user's files kept
