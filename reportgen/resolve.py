"""Resolve: a line of models.txt -> a config dict and where it came from.

A line is a hub id (``org/name``, optional ``@revision``), a model folder, or
a ``config.json`` path. Bundled configs (real config.json files shipped in
``reportgen/catalog``) serve hub ids offline; any other hub id is read from
the local Hugging Face cache or fetched as config.json alone, never weights.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ResolveError, UsageError

HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
CATALOG_SOURCES = "reportgen/catalog/SOURCES.md"


@dataclass(frozen=True)
class ModelSpec:
    """One model named by the user: the text as given and where it was given."""

    text: str
    origin: str  # "models.txt:3", or "command line"

    @property
    def is_local(self) -> bool:
        """A path (existing or not) rather than a hub id: ``configs/x.json`` is a file, not repo ``x.json``."""
        return (
            Path(self.text).expanduser().exists()
            or not HUB_ID.match(self.text)
            or self.text.lower().endswith(".json")
        )


@dataclass(frozen=True)
class ResolvedConfig:
    """A config.json as a dict, the id it is reported under, and its provenance."""

    id: str
    source: str
    config: dict[str, Any]
    folder: Path | None  # where remote code would live, for --trust-remote-code


def read_models_file(path: Path) -> tuple[list[ModelSpec], list[str]]:
    """The model lines of a models file (blank lines and # comments skipped), and notes on duplicates."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"models file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read models file {path}: {exc}") from None
    specs: list[ModelSpec] = []
    notes: list[str] = []
    first_seen: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        origin = f"{path}:{number}"
        if line in first_seen:
            notes.append(f"{origin}: {line} is a duplicate of {first_seen[line]}; reported once")
            continue
        first_seen[line] = origin
        specs.append(ModelSpec(text=line, origin=origin))
    if not specs:
        raise UsageError(f"models file {path} names no model (only blank lines and comments)")
    return specs, notes


def catalog_ids() -> list[str]:
    """The hub ids of the bundled configs, sorted."""
    folder = resources.files("reportgen") / "catalog"
    return sorted(
        entry.name.removesuffix(".json").replace("--", "/", 1)
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    )


def _load_json(path: Path, where: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResolveError(f"{where}: {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResolveError(f"{where}: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ResolveError(f"{where}: {path} is not a config.json (expected a JSON object)")
    return data


def _resolve_local(spec: ModelSpec) -> ResolvedConfig:
    path = Path(spec.text).expanduser()
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ResolveError(f"{spec.origin}: folder {spec.text} has no config.json")
    elif path.is_file():
        config_path = path
    else:
        raise ResolveError(
            f"{spec.origin}: {spec.text} does not exist "
            "(a line is a model folder, a config.json, or a hub id org/name[@revision])"
        )
    config = _load_json(config_path, spec.origin)
    return ResolvedConfig(
        id=spec.text, source=f"local file {config_path}", config=config, folder=config_path.parent
    )


def _resolve_bundled(repo: str) -> ResolvedConfig | None:
    entry = resources.files("reportgen") / "catalog" / (repo.replace("/", "--") + ".json")
    if not entry.is_file():
        return None
    config = json.loads(entry.read_text(encoding="utf-8"))
    return ResolvedConfig(
        id=repo,
        source=f"bundled config ({CATALOG_SOURCES} gives its provenance)",
        config=config,
        folder=None,
    )


def _resolve_hub(spec: ModelSpec, repo: str, revision: str | None) -> ResolvedConfig:
    # Imported here: huggingface_hub is only needed for ids that are not bundled.
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    label = repo + (f"@{revision}" if revision else "")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    try:
        path = hf_hub_download(repo, "config.json", revision=revision, token=os.environ.get("HF_TOKEN"))
    except GatedRepoError:
        fix = (
            "the token in HF_TOKEN has not been granted access: accept the licence on the model's hub page"
            if os.environ.get("HF_TOKEN")
            else "set HF_TOKEN to a token that has accepted its licence"
        )
        raise ResolveError(f"{spec.origin}: {label} is a gated repo; {fix}") from None
    except RepositoryNotFoundError:
        raise ResolveError(
            f"{spec.origin}: {label} was not found on the hub (or is private: set HF_TOKEN)"
        ) from None
    except RevisionNotFoundError:
        raise ResolveError(f"{spec.origin}: {label}: revision {revision} does not exist") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise ResolveError(
            f"{spec.origin}: {label} is not bundled and not in the local Hugging Face cache, and {why}; "
            "give a path to its config.json instead, or run with network access (and HF_TOKEN for gated repos)"
        ) from None
    except Exception as exc:  # network and HTTP errors come in many classes
        raise ResolveError(f"{spec.origin}: cannot fetch config.json of {label}: {exc}") from None
    config = _load_json(Path(path), spec.origin)
    return ResolvedConfig(
        id=label,
        source=f"config.json from the Hugging Face hub ({label}), read through the local cache",
        config=config,
        folder=Path(path).parent,
    )


def resolve(spec: ModelSpec) -> ResolvedConfig:
    """The config of one model line: local path, bundled catalog, or hub (config.json only)."""
    if spec.is_local:
        return _resolve_local(spec)
    match = HUB_ID.match(spec.text)
    assert match is not None  # is_local is False only for hub ids
    repo, revision = match.group("repo"), match.group("revision")
    if revision is None:
        bundled = _resolve_bundled(repo)
        if bundled is not None:
            return bundled
    return _resolve_hub(spec, repo, revision)
