"""The result cache: a model whose inputs did not change is served from the last run, not analysed again.

Each model's entry is keyed by everything that decides its numbers and pages
(``model_key``): the config's content and source, every field of the study
(ranks, scenarios, methods and their options, memory assumptions, the merge
check's device and budget), the installed versions of the libraries (read from
package metadata, without importing them) and a hash of reportgen's own code and
templates. An entry holds the model's report (every field, ``codec``) and its
files as written. It lives under the user's cache directory, never in the output
folder. Reading an entry trusts nothing: a corrupt or foreign one is ignored with
a one-line warning and the model is recomputed. No torch here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .codec import CodecError, decode, encode
from .data import ModelReport
from .errors import UsageError
from .output import write_file

log = logging.getLogger(__name__)

FORMAT = "reportgen-result-cache"
VERSION = 1  # of the entry layout; a new layout lives in its own folder and never reads an old one
LAYOUT = f"v{VERSION}"
ENV_VAR = "REPORTGEN_CACHE_DIR"
KEEP = 8  # entries kept per model line (other studies, other options, other versions)
# The installed packages whose version can change a report's numbers or bytes.
LIBRARIES = ("torch", "transformers", "peft", "accelerate", "huggingface_hub", "safetensors", "numpy",
             "matplotlib", "jinja2", "markupsafe")
# Study fields that only say how the work is spread over processes, never what it computes.
NOT_IN_KEY = ("jobs", "cell_jobs")
# The parts of the key, in words, for --verbose ("recomputed: the ranks changed").
PART_LABELS = {"model": "the model line or its folder name", "config": "the config", "libraries": "a library version",
               "reportgen": "reportgen's code or templates", "merge_jobs": "--jobs (the merge check's shared budget)",
               "variants": "the methods", "memory": "the memory assumptions", "merge_check": "--no-merge-check",
               "device": "--device", "merge_budget": "--merge-budget", "trust_remote_code": "--trust-remote-code"}
CACHEDIR_TAG = "Signature: 8a477f597d28d172789f06886806bc55\n# reportgen's result cache (see bford.ca/cachedir)\n"


def default_cache_dir() -> Path:
    """$REPORTGEN_CACHE_DIR, else $XDG_CACHE_HOME/reportgen, else ~/.cache/reportgen (as huggingface_hub keeps its own)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "reportgen"


def check_cache_dir(cache_dir: Path, out: Path) -> None:
    """UsageError when the cache would sit in (or hold) the output folder that gets published."""
    cache, site = cache_dir.expanduser().resolve(), out.expanduser().resolve()
    if cache == site or site in cache.parents or cache in site.parents:
        raise UsageError(f"--cache-dir {cache_dir} must lie outside the output folder {out} (and not hold it): "
                         "the output folder is published, the cache is not")


def _digest(value: Any) -> str:
    text = json.dumps(encode(value, strict=False), sort_keys=True, ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """What every model of a run shares in its key: library versions and reportgen's code."""

    libraries: str
    reportgen: str


def fingerprint(templates: Path | None = None) -> Fingerprint:
    """The installed library versions (package metadata, nothing imported) and a hash of reportgen's files."""
    versions = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return Fingerprint(_digest(versions), code_hash(templates))


def code_hash(templates: Path | None = None, package: Path | None = None) -> str:
    """SHA-256 over every file of the reportgen package and of its templates folder, path by path."""
    package = package or Path(__file__).resolve().parent
    if templates is None:
        templates = package.parent / "templates"  # render/jinja.py's TEMPLATES, without importing jinja2
    sha = hashlib.sha256()
    for root in (package, templates):
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            sha.update(f"{root.name}/{path.relative_to(root).as_posix()}\0".encode())
            sha.update(hashlib.sha256(path.read_bytes()).digest())
    return sha.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    """A model's key, part by part (name -> SHA-256), so a miss can say which part changed."""

    parts: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(f"{name}={value}" for name, value in self.parts).encode()).hexdigest()

    def changed_from(self, earlier: Mapping[str, str]) -> list[str]:
        """The parts, in words, that differ from an earlier key's."""
        names = [name for name, value in self.parts if name in earlier and earlier[name] != value]
        return [PART_LABELS.get(name, f"the {name.replace('_', ' ')}") for name in names]


def model_key(text: str, slug: str, config: Mapping[str, Any], source: str, study: Any, jobs: int,
              shared: Fingerprint, code_files: Iterable[Path] = ()) -> CacheKey:
    """The key of one model: its line and folder, its config, every field of the study, the run's fingerprint.

    ``study`` is the pipeline's Study: each of its fields is a part of its own,
    so an option added to it (or to the memory assumptions it holds) is covered
    without naming it here. ``code_files`` are the model's own Python files when
    --trust-remote-code lets them run.
    """
    code = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(code_files)}
    parts = [("model", _digest([text, slug])), ("config", _digest([dict(config), source, code]))]
    parts += [(f.name, _digest(getattr(study, f.name)))
              for f in dataclasses.fields(study) if f.name not in NOT_IN_KEY]
    if getattr(study, "merge_check", False):
        parts.append(("merge_jobs", _digest(jobs)))  # the merge check's budget is shared between the jobs
    parts += [("libraries", shared.libraries), ("reportgen", shared.reportgen)]
    return CacheKey(tuple(parts))


@dataclass(frozen=True)
class CachedModel:
    """One model served from the cache: its report and its files (path inside the site, content)."""

    report: ModelReport
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class EntryInfo:
    """What `reportgen cache info` lists for one entry."""

    model: str
    size: int
    created: str
    merge_device: str


class ResultCache:
    """The entries under one cache directory: <dir>/v1/entries/<key>.json and <dir>/v1/latest/<model>.json."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()
        self.layout = self.root / LAYOUT

    def _entry(self, key: CacheKey) -> str:
        return f"entries/{key.digest[:2]}/{key.digest}.json"

    def _latest(self, model: str) -> str:
        return f"latest/{hashlib.sha256(model.encode('utf-8', 'surrogatepass')).hexdigest()}.json"

    def load(self, key: CacheKey) -> CachedModel | None:
        """The entry of this key, or None when there is none or it cannot be trusted (warned in one line)."""
        path = self.layout / self._entry(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            _ignore(path, f"cannot read it ({exc})")
            return None
        try:
            return _parse(json.loads(text), key)
        except (ValueError, CodecError, TypeError, KeyError) as exc:
            _ignore(path, str(exc))
            return None

    def store(self, key: CacheKey, model: str, report: ModelReport, files: Sequence[tuple[str, str]],
              created: str) -> None:
        """Keep a model's report and files under its key, and remember the key as that model's latest."""
        body = {"key": key.digest, "parts": dict(key.parts), "model": model, "created": created,
                "merge_device": report.merge_check.device, "report": encode(report), "files": [list(f) for f in files]}
        entry = {"format": FORMAT, "version": VERSION, "sha256": _digest(body), **body}
        self._mark()
        write_file(self.layout, self._entry(key), json.dumps(entry, ensure_ascii=False))
        recent = [key.digest, *(d for d in self._recent(model) if d != key.digest)]
        write_file(self.layout, self._latest(model),
                   json.dumps({"model": model, "parts": dict(key.parts), "recent": recent[:KEEP]}))
        for digest in recent[KEEP:]:  # a model line keeps its KEEP newest entries: the cache does not grow forever
            (self.layout / "entries" / digest[:2] / f"{digest}.json").unlink(missing_ok=True)

    def _recent(self, model: str) -> list[str]:
        """The digests of this model line's newest entries, newest first."""
        try:
            data = json.loads((self.layout / self._latest(model)).read_text(encoding="utf-8"))
            return [str(d) for d in data["recent"] if re.fullmatch(r"[0-9a-f]{64}", str(d))]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def previous_parts(self, model: str) -> dict[str, str]:
        """The key parts of the last entry stored for this model line ({} when none)."""
        try:
            data = json.loads((self.layout / self._latest(model)).read_text(encoding="utf-8"))
            parts = data["parts"] if data.get("model") == model else {}
            return {str(name): str(value) for name, value in parts.items()}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            return {}

    def entries(self) -> list[EntryInfo]:
        """Every entry, newest first (unreadable ones listed as such)."""
        found: list[EntryInfo] = []
        for path in sorted((self.layout / "entries").glob("*/*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found.append(EntryInfo(str(data["model"]), path.stat().st_size, str(data["created"]),
                                       str(data["merge_device"]) or "not run"))
            except (OSError, ValueError, KeyError, TypeError):
                found.append(EntryInfo(f"(unreadable: {path.name})", path.stat().st_size, "", "-"))
        return sorted(found, key=lambda entry: entry.created, reverse=True)

    def size(self) -> int:
        """Bytes the cache holds."""
        return sum(path.stat().st_size for path in self.layout.rglob("*") if path.is_file())

    def clear(self) -> int:
        """Remove every entry reportgen wrote (nothing else in the directory); returns how many entries."""
        count = len(list((self.layout / "entries").glob("*/*.json")))
        for folder in (self.root / f"v{n}" for n in range(1, VERSION + 1)):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
        (self.root / "CACHEDIR.TAG").unlink(missing_ok=True)
        return count

    def _mark(self) -> None:
        tag = self.root / "CACHEDIR.TAG"
        if not tag.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            tag.write_text(CACHEDIR_TAG, encoding="utf-8")


def _ignore(path: Path, why: str) -> None:
    """The one-line warning for an entry that is not trusted."""
    log.warning("ignoring cache entry %s: %s; the model is recomputed", path, " ".join(why.split())[:200])


def _parse(data: Any, key: CacheKey) -> CachedModel:
    """An entry's JSON as a CachedModel, every claim checked (ValueError/CodecError otherwise)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError("not a reportgen cache entry of this version")
    body = {name: value for name, value in data.items() if name not in ("format", "version", "sha256")}
    if data.get("sha256") != _digest(body):
        raise ValueError("its checksum does not match its content (corrupt)")
    if data.get("key") != key.digest or data.get("parts") != dict(key.parts):
        raise ValueError("it was stored under another key (foreign)")
    report = decode(ModelReport, data["report"], "report")
    files = decode(tuple[tuple[str, str], ...], data["files"], "files")
    if not files or any(not name.startswith(f"{report.slug}/") for name, _ in files):
        raise ValueError(f"its files do not all lie in the model's folder {report.slug}/")
    return CachedModel(report, files)
