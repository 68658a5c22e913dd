"""Quiet means quiet: what libraries warn while configs are built goes into each report, never to the terminal.

The models are a sample of the zoo's: transformers' own default configs (reportgen/zoo.py), the
configs that make transformers warn. Each run is a real `reportgen` process, so that text written
to the file descriptors themselves would be seen too. The whole zoo is checked the same way by the
slow sweep in tests/test_zoo.py (nothing reaches stdout or stderr, file descriptors included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reportgen.zoo import write_zoo

ROOT = Path(__file__).resolve().parents[1]
# model type -> what transformers says while building its default config (seen on stderr without reportgen:
# test_transformers_itself_prints_these_warnings is the control).
WARNS = {
    "bert-generation": "If you want to use `BertGenerationDecoder` as a standalone, add `is_decoder=True.`",
    "apertus": "CUDA-fused xIELU not available",
    "arcee": "Model config: bos_token_id must be `None` or an integer within the vocabulary",
}
SAMPLE = ["llama", "gpt2", "mixtral", *WARNS]


def reportgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`reportgen ARGS` in its own process, stdout and stderr apart (neither is a terminal)."""
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reportgen", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1200)


def zoo_models(tmp_path: Path, model_types: list[str] | None) -> tuple[Path, dict[str, Path]]:
    """The zoo's default configs of model_types (all when None) in a models file; the file and type -> config."""
    entries = [entry for entry in write_zoo(tmp_path / "zoo", model_types) if entry.path]
    models = tmp_path / "models.txt"
    models.write_text("".join(f"{entry.path}\n" for entry in entries))
    return models, {entry.model_type: entry.path for entry in entries if entry.path}


def report_warnings(out: Path, config: Path) -> list[str]:
    index = json.loads((out / "index.json").read_text())
    entry = next(model for model in index["models"] if model["id"] == str(config))
    warnings: list[str] = json.loads((out / entry["report"]).read_text())["warnings"]
    return warnings


def test_transformers_itself_prints_these_warnings(tmp_path: Path) -> None:
    """The control: building the sample's configs with transformers alone prints each warning on stderr."""
    _, configs = zoo_models(tmp_path, list(WARNS))
    build = ("import json, sys, torch\nfrom transformers import AutoConfig, AutoModelForCausalLM\n"
             "for path in sys.argv[1:]:\n"
             "    with torch.device('meta'):\n"
             "        AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))\n")
    done = subprocess.run([sys.executable, "-c", build, *map(str, configs.values())], capture_output=True,
                          text=True, timeout=600, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    for said in WARNS.values():
        assert said in done.stderr


@pytest.mark.parametrize("flag", ["--quiet", None])
def test_library_warnings_reach_the_report_not_the_terminal(tmp_path: Path, flag: str | None) -> None:
    models, configs = zoo_models(tmp_path, SAMPLE)
    done = reportgen("report", "--models", str(models), "--out", str(tmp_path / "out"), "--no-merge-check",
                     *([flag] if flag else []), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no warning, and not a terminal: no progress bar
    if flag == "--quiet":
        assert done.stdout == ""
    else:  # the closing table and the line saying where the reports went, nothing else
        assert done.stdout.splitlines()[0].startswith("model ")
        assert len(done.stdout.splitlines()) == 2 + len(SAMPLE) + 1
    for model_type, said in WARNS.items():
        assert any(said in warning for warning in report_warnings(tmp_path / "out", configs[model_type]))
    assert report_warnings(tmp_path / "out", configs["llama"]) == []
    page = (tmp_path / "out" / json.loads((tmp_path / "out" / "index.json").read_text())["models"][
        list(configs).index("bert-generation")]["slug"] / "report.md").read_text()
    assert "## Warnings" in page and "is_decoder=True" in page


def test_each_report_keeps_its_own_warnings_whatever_ran_before(tmp_path: Path) -> None:
    """transformers warns "once" per process; each report still lists its own (the same config twice, two lines)."""
    _, configs = zoo_models(tmp_path, ["bert-generation"])
    twin = tmp_path / "twin.json"
    twin.write_text(configs["bert-generation"].read_text())
    models = tmp_path / "models.txt"
    models.write_text(f"{configs['bert-generation']}\n{twin}\n")
    done = reportgen("report", "--models", str(models), "--out", str(tmp_path / "out"), "--no-merge-check",
                     "--quiet", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    first, second = (report_warnings(tmp_path / "out", path) for path in (configs["bert-generation"], twin))
    assert first == second and any(WARNS["bert-generation"] in warning for warning in first)


def test_inspect_prints_the_library_warnings_in_its_printout_not_on_stderr(tmp_path: Path) -> None:
    _, configs = zoo_models(tmp_path, ["bert-generation", "llama"])
    done = reportgen("inspect", str(configs["bert-generation"]), "--ranks", "8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    warnings = done.stdout[done.stdout.index("\nWarnings ("):]
    assert WARNS["bert-generation"] in warnings
    # What the libraries print while they load (bitsandbytes, installed with the tests, notes its CPU kernels
    # when PEFT imports it) is not a model's: llama's printout has no warnings at all.
    done = reportgen("inspect", str(configs["llama"]), "--ranks", "8", cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "\nWarnings (" not in done.stdout
