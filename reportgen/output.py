"""Writing the site: every file lands whole (temporary name, then rename), only inside the output folder,
each model in a folder whose name (its slug) is safe on every file system.

A run that is interrupted (Ctrl-C, kill) leaves each file as it was or as
it is now, never half written. Temporary files carry a marker in their name
(``.report.json.reportgen-XXXXXXXX.tmp``) so that the next run can remove
the ones a killed run left behind without touching anything else.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .errors import ReportgenError

TEMP_MARKER = ".reportgen-"
TEMP_SUFFIX = ".tmp"
MAX_SLUG = 80
HASH_LENGTH = 8
# Names Windows reserves whatever the extension: a folder called "con" cannot be created there.
RESERVED_NAMES = {"con", "prn", "aux", "nul"} | {f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10)}


def slugify(model_id: str) -> str:
    """A folder name for a model id: ASCII letters, digits, '.', '_' and '-', never hidden or '..', bounded.

    An id that reads the same as its folder name (``org/name`` -> ``org--name``)
    keeps it; any other gets a short hash of the id so that lossy names stay apart.
    """
    plain = model_id.replace("/", "--")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip(".-_")
    if readable and readable == plain and len(readable) <= MAX_SLUG and readable.split(".")[0].lower() not in RESERVED_NAMES:
        return readable
    return _hashed(readable, model_id)


def _hashed(readable: str, key: str) -> str:
    """readable, cut to fit, with the first hex digits of key's SHA-256 appended."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_LENGTH]
    stem = readable[: MAX_SLUG - HASH_LENGTH - 1].rstrip(".-_") or "model"
    if stem.split(".")[0].lower() in RESERVED_NAMES:
        stem = stem.replace(".", "-", 1)  # "nul.json" would still be reserved on Windows, "nul-json" is not
    return f"{stem}-{digest}"


def unique_slugs(ids: Sequence[str]) -> list[str]:
    """One slug per id, distinct even on a case-insensitive file system (clashes get a hash of the id)."""
    slugs = [slugify(model_id) for model_id in ids]
    for attempt in itertools.count():
        counts = Counter(slug.lower() for slug in slugs)
        clashing = [n for n, slug in enumerate(slugs) if counts[slug.lower()] > 1]
        if not clashing:
            return slugs
        for n in clashing:
            # First by the id alone (stable across runs); a repeated id also by its position.
            key = ids[n] if attempt == 0 else f"{ids[n]}\n{n}\n{attempt}"
            slugs[n] = _hashed(slugs[n], key)
    raise AssertionError("unreachable")


def inside(out: Path, relative: str) -> Path:
    """out/relative, refusing any path that would leave the output folder."""
    root = out.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise ReportgenError(f"refusing to write {relative!r}: it would leave the output folder {out}")
    return target


def write_file(out: Path, relative: str, content: str | bytes) -> Path:
    """Write one file of the site atomically: readers see the old file or the new one, never half."""
    target = inside(out, relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}{TEMP_MARKER}", suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        _commit(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def _commit(temporary: str, target: Path) -> None:
    """Put a fully written temporary file in place, atomically (a separate step so tests can interrupt it)."""
    os.replace(temporary, target)


def remove_stale_temporaries(out: Path, older_than: float | None = None) -> list[Path]:
    """Delete the temporary files an interrupted run left in out and its model folders; returns them."""
    if not out.is_dir():
        return []
    cutoff = time.time() if older_than is None else older_than
    removed: list[Path] = []
    for folder in [out, *(child for child in out.iterdir() if child.is_dir() and not child.is_symlink())]:
        for path in folder.glob(f".*{TEMP_MARKER}*{TEMP_SUFFIX}"):
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
