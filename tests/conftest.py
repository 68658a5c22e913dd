"""Shared test setup: every test runs offline; a fixture writes the tiny configs, one runs the command line."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

# Before anything imports huggingface_hub, which reads this once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

from reportgen.cli import cli  # noqa: E402  (after HF_HUB_OFFLINE is set)
from tests.families import tiny_config  # noqa: E402

_connect = socket.socket.connect


def _local_only(sock: socket.socket, address: Any) -> Any:
    """socket.connect that refuses every address but loopback and unix sockets."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise RuntimeError(f"a test tried to reach the network ({address!r}); tests must stay offline")
    return _connect(sock, address)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1, no HF_TOKEN, and no socket to anything but this machine."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", _local_only)


@pytest.fixture(autouse=True)
def result_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own empty result cache (never the user's): REPORTGEN_CACHE_DIR, returned."""
    folder = tmp_path_factory.mktemp("result-cache")
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write tmp_path/NAME/config.json and return that folder.

    The config is the tiny one of family (tests/families.py, the tiny Llama by default), or config when given,
    with overrides on top; NAME defaults to its model_type.
    """

    def write(name: str | None = None, family: str = "llama", config: dict[str, Any] | None = None,
              **overrides: Any) -> Path:
        written = (tiny_config(family) if config is None else config) | overrides
        folder = tmp_path / (name or written["model_type"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(written), encoding="utf-8")
        return folder

    return write


class Cli:
    """The real `reportgen` command line, run in process; exceptions it does not handle reach the test."""

    def __call__(self, *args: str | Path) -> Result:
        """`reportgen ARGS`."""
        return CliRunner().invoke(cli, [str(arg) for arg in args], prog_name="reportgen", catch_exceptions=False)

    def report(self, folder: Path, models: str | Iterable[str | Path], *args: str | Path,
               out: Path | None = None) -> Result:
        """`reportgen report --models FOLDER/models.txt --out FOLDER/out ARGS`.

        models.txt holds models, one a line (a str: the file's text as it is); out replaces FOLDER/out.
        """
        models_file = folder / "models.txt"
        models_file.write_text(models if isinstance(models, str) else "".join(f"{line}\n" for line in models))
        return self("report", "--models", models_file, "--out", out or folder / "out", *args)

    @staticmethod
    def index(out: Path) -> dict[str, Any]:
        """The index.json of a written report folder."""
        index: dict[str, Any] = json.loads((out / "index.json").read_text())
        return index

    def report_json(self, out: Path, model_id: str | None = None) -> dict[str, Any]:
        """The report.json the index points at for model_id (default: the one model reported)."""
        models = self.index(out)["models"]
        if model_id is None:
            (entry,) = models
        else:
            entry = next(model for model in models if model["id"] == model_id)
        report: dict[str, Any] = json.loads((out / entry["report"]).read_text())
        return report


@pytest.fixture(scope="session")
def run_cli() -> Cli:
    """Runs the real command line: run_cli(*args), run_cli.report(folder, models, *args), and reads what it wrote."""
    return Cli()
