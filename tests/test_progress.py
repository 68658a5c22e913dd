"""What a person sees: a progress bar only on a terminal, a closing summary, stage times with --verbose."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from click.testing import Result

from tests.families import TINY_LLAMA_PARAMS

if TYPE_CHECKING:
    from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[1]


def report_good_and_gone(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, *extra: str
) -> tuple[Result, Path, Path]:
    """Report the tiny Llama and one missing path; returns the result, the models file and the model folder."""
    good = write_config("good")
    result = run_cli.report(tmp_path, [good, f"{tmp_path}/gone"], "--no-merge-check", *extra)
    return result, tmp_path / "models.txt", good


def test_the_closing_summary_lists_every_model(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    result, models, good = report_good_and_gone(tmp_path, write_config, run_cli)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"model +total params +cells +checks passed +time", lines[0])
    assert set(lines[1]) == {"-", " "}
    # Tiny Llama: its parameters counted by hand (tests/families.py); 10 scenarios x 2 ranks = 20 cells;
    # checks: 20 cells PEFT agrees with + 7 module types whose shape follows from the config = 27.
    assert re.fullmatch(rf"{re.escape(str(good))} +{TINY_LLAMA_PARAMS:,} +20 +27/27 +\d+\.\d s", lines[2])
    assert re.fullmatch(rf"{re.escape(str(tmp_path))}/gone +- +- +failed +\d+\.\d s", lines[3])
    assert lines[4] == f"wrote 1 model report(s) to {tmp_path / 'out'}/ (index: {tmp_path / 'out' / 'index.html'})"
    # Not a terminal: no progress bar, only the error line.
    assert result.stderr == (
        f"error: {models}:2: {tmp_path}/gone does not exist "
        "(a line is a model folder, a config.json, or a hub id org/name[@revision])\n"
    )


def test_quiet_prints_nothing_but_errors(tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli) -> None:
    result, models, _ = report_good_and_gone(tmp_path, write_config, run_cli, "--quiet")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {models}:2: {tmp_path}/gone does not exist "
        "(a line is a model folder, a config.json, or a hub id org/name[@revision])"
    ]


def test_verbose_logs_the_time_of_each_stage(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    result, _, good = report_good_and_gone(tmp_path, write_config, run_cli, "--verbose")
    stages = re.findall(rf"^INFO: {re.escape(str(good))}: (\w+) took \d+\.\d\d s$", result.stderr, re.MULTILINE)
    assert stages[:3] == ["build", "analyse", "peft"]  # later stages (memory, merge) log the same way


def test_on_a_terminal_a_bar_shows_the_model_and_the_stage(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    good = write_config("good")
    models = tmp_path / "models.txt"
    models.write_text(f"{good}\n")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))  # 30 rows, 120 columns
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "reportgen", "report", "--models", str(models), "--out", str(tmp_path / "out"),
         "--no-merge-check"],
        env=env, stdout=subprocess.PIPE, stderr=follower,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    stdout, _ = process.communicate(timeout=300)
    os.close(leader)
    assert process.returncode == 0
    text = screen.decode("utf-8", "replace")
    assert re.search(r"models +0/1 +\|", text)
    assert str(good) in text
    assert re.search(r"cells +\d+/20 +\|.*peft: formula and PEFT count per cell", text)
    assert b"27/27" in stdout
