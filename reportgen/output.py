"""Writing the site: every file lands whole (temporary name, then rename), only inside the output folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ReportgenError


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
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
