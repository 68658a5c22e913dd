"""Writing the site: every file lands whole (temporary name, then rename), only inside the output folder.

A run that is interrupted (Ctrl-C, kill) leaves each file as it was or as
it is now, never half written. Temporary files carry a marker in their name
(``.report.json.reportgen-XXXXXXXX.tmp``) so that the next run can remove
the ones a killed run left behind without touching anything else.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from .errors import ReportgenError

TEMP_MARKER = ".reportgen-"
TEMP_SUFFIX = ".tmp"


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
