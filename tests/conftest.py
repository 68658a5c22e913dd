"""Shared test setup: every test runs offline, and small real configs are at hand."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Before anything imports huggingface_hub, which reads this once, at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

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


# A shrunken Llama: hidden 64, 2 layers, 4 heads of 16, 2 kv heads, MLP 128, vocab 128.
TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 128,
    "tie_word_embeddings": False,
}


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config.json (the tiny Llama, with overrides) into tmp_path/NAME/ and return that folder."""

    def write(name: str = "tiny-llama", **overrides: Any) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(TINY_LLAMA | overrides), encoding="utf-8")
        return folder

    return write
