"""The output folder holds one run: one writer at a time, each model's folder swapped in whole, the index last.

What gets published (a docs site, a pull-request artifact, ``reportgen diff``)
is the output folder, so at every instant it must read as one run's output:

- **One writer.** A run holds ``.reportgen.lock`` (an OS lock, released by the
  kernel when the process dies). A second run says who holds it and stops
  (exit status 3), or waits with ``--wait``. The file names the holder; a run
  that finds a dead holder's name there takes over with a note.
- **Whole-model swaps.** A model's files are written into a hidden staging
  folder beside its folder and exchanged with it in one step (``renameat2``
  with ``RENAME_EXCHANGE`` on Linux; elsewhere the old folder is set aside and
  put back by the next run if the run dies in between). A user's own files in
  the model's folder are carried over (hard links) before the swap.
- **A manifest.** ``index.json`` lists every file this run wrote (``files``),
  and the lock file journals each model's files before its swap, so that the
  next run removes reportgen's own files of models no longer in the run, and
  never a file reportgen did not write. The index is written last: it lists
  only folders that are complete.
- **Repair.** A run that finds a dead run's staging folders, set-aside folders
  or temporary files removes them (or puts a set-aside folder back) before it
  writes anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .errors import OutputBusy, ReportgenError
from .output import inside, remove_stale_temporaries, write_file

LOCK_NAME = ".reportgen.lock"
STAGING_PREFIX = ".reportgen-staging-"
ASIDE_PREFIX = ".reportgen-aside-"
MANIFEST_KEY = "files"
INDEX_JSON = "index.json"

Owned = Mapping[str, frozenset[str]]  # a model folder's slug -> the files reportgen wrote there (relative to it)


# --- one writer ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Holder:
    """The run that holds (or held) a folder's lock, as its lock file names it."""

    pid: int
    started: str
    host: str

    def describe(self) -> str:
        return f"pid {self.pid}, started {self.started}" + ("" if self.host == socket.gethostname() else f" on {self.host}")


def _read_lock(path: Path) -> tuple[Holder | None, dict[str, list[str]]]:
    """The holder a lock file names and the files its run journalled, per model folder (a torn line is skipped)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None, {}
    holder: Holder | None = None
    journal: dict[str, list[str]] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if {"pid", "started", "host"} <= entry.keys() and isinstance(entry["pid"], int):
            holder = Holder(entry["pid"], str(entry["started"]), str(entry["host"]))
        elif isinstance(entry.get("folder"), str) and isinstance(entry.get("files"), list):
            journal.setdefault(entry["folder"], []).extend(str(name) for name in entry["files"])
    return holder, journal


def _try_lock(stream: IO[str], wait: bool) -> bool:
    """Take the OS lock on the open lock file: False when another process holds it (and wait is False)."""
    try:
        import fcntl
    except ImportError:  # Windows: a lock on the file's first byte, released when the process ends
        import msvcrt

        while True:
            try:
                msvcrt.locking(stream.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                return True
            except OSError:
                if not wait:
                    return False
                time.sleep(0.2)
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


class FolderLock:
    """The output folder's lock, held for a whole run (a context manager)."""

    def __init__(self, out: Path, wait: bool = False, note: Callable[[str], None] = lambda line: None) -> None:
        self.out, self.wait, self.note = out, wait, note
        self.path = out / LOCK_NAME
        self.stream: IO[str] | None = None
        self.dead_run_files: dict[str, list[str]] = {}

    def __enter__(self) -> FolderLock:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.path.is_symlink() or (self.path.exists() and not self.path.is_file()):
            raise ReportgenError(f"refusing to use {self.path}: it is not a plain file (reportgen keeps its lock there)")
        stream = open(self.path, "a+", encoding="utf-8")  # never truncated before the lock is ours
        if not _try_lock(stream, wait=False):
            holder = self._holder()
            who = f"another reportgen run ({holder.describe()})" if holder else "another reportgen run"
            if not self.wait:
                stream.close()
                raise OutputBusy(f"{who} is writing {self.out}/; wait for it to end, or pass --wait to queue "
                                 "behind it")
            self.note(f"waiting for {who} to finish writing {self.out}/")
            _try_lock(stream, wait=True)
        self.stream = stream
        holder, self.dead_run_files = _read_lock(self.path)
        if holder is not None:
            self.note(f"took over the lock of {self.out}/ from a reportgen run ({holder.describe()}) that did not "
                      "finish; what it left half-done is cleaned up first")
        stream.seek(0)
        stream.truncate()
        me = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname()}
        stream.write(json.dumps(me) + "\n")
        stream.flush()
        return self

    def _holder(self) -> Holder | None:
        """The live holder's name; it may not have written it yet, so look a few times."""
        for _ in range(10):
            holder, _journal = _read_lock(self.path)
            if holder is not None and _alive(holder.pid):
                return holder
            time.sleep(0.05)
        return None

    def __exit__(self, *exc: object) -> None:
        assert self.stream is not None
        if exc[0] is None:  # a clean end: nothing half-done to name (a failed run keeps its journal)
            self.stream.seek(0)
            self.stream.truncate()
            self.stream.flush()
        self.stream.close()  # the OS lock goes with the file
        self.stream = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but is not ours to signal
    return True


def journal(out: Path, folder: str, files: Iterable[str]) -> None:
    """Record in the lock file, before they are put in place, the files about to land in folder ('' = top level)."""
    lock = out / LOCK_NAME
    if not lock.is_file():  # a library caller writing without the CLI's lock: nothing to journal into
        return
    line = json.dumps({"folder": folder, "files": sorted(files)}, ensure_ascii=False) + "\n"
    with open(lock, "a", encoding="utf-8") as stream:  # one append: whole lines, even from workers
        stream.write(line)


# --- what reportgen wrote before ----------------------------------------------------------------

def read_manifest(out: Path, dead_run_files: Mapping[str, list[str]] = {}) -> dict[str, frozenset[str]] | None:
    """The files reportgen owns in out, per folder ('' = top level): the last index's manifest and a dead run's journal.

    None when the folder has no manifest (empty, or written by a reportgen
    before manifests): then nothing is removed and a model folder's files
    that the new run does not write are kept.
    """
    owned: dict[str, set[str]] = {}
    manifest = _manifest_entries(out / INDEX_JSON)
    if manifest is None and not dead_run_files:
        return None
    for relative in manifest or []:
        folder, _, name = relative.rpartition("/")
        owned.setdefault(folder, set()).add(name)
    for folder, names in dead_run_files.items():
        owned.setdefault(folder, set()).update(names)
    return {folder: frozenset(name for name in names if _plain_name(out, folder, name))
            for folder, names in owned.items() if _plain_folder(folder)}


def _manifest_entries(index: Path) -> list[str] | None:
    try:
        payload = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = payload.get(MANIFEST_KEY) if isinstance(payload, dict) else None
    if not isinstance(files, list):
        return None
    return [entry for entry in files if isinstance(entry, str)]


def _plain_folder(folder: str) -> bool:
    return folder == "" or ("/" not in folder and folder not in {".", ".."} and not folder.startswith("."))


def _plain_name(out: Path, folder: str, name: str) -> bool:
    """A name from a manifest that is a plain, visible file name inside out (a crafted index.json names nothing else)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return False
    try:
        inside(out, f"{folder}/{name}" if folder else name)
    except ReportgenError:
        return False
    return True


# --- repair -------------------------------------------------------------------------------------

def repair(out: Path) -> list[str]:
    """Undo what a dead run left half-done: set-aside folders back (or gone), staging folders and temporaries gone."""
    done: list[str] = []
    for child in sorted(out.iterdir()):
        if child.is_symlink() or not child.is_dir():
            continue
        if child.name.startswith(ASIDE_PREFIX):
            target = out / child.name.removeprefix(ASIDE_PREFIX)
            if target.exists() or target.is_symlink():
                shutil.rmtree(child)
                done.append(f"removed {child.name}")
            else:  # the run died between setting the old folder aside and putting the new one in place
                os.rename(child, target)
                done.append(f"restored {target.name}")
        elif child.name.startswith(STAGING_PREFIX):
            shutil.rmtree(child)
            done.append(f"removed {child.name}")
    done += [f"removed {path.relative_to(out)}" for path in remove_stale_temporaries(out)]
    return done


# --- whole-model swaps --------------------------------------------------------------------------

def put_folder(out: Path, slug: str, files: Iterable[tuple[str, str | bytes]], owned: frozenset[str] | None) -> list[str]:
    """Write one model's folder whole: staged, the user's own files carried over, then swapped in; returns its files.

    ``owned``: the names reportgen wrote in this folder before (None: not known,
    so every file the new run does not write is kept as the user's).
    """
    target = inside(out, slug)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ReportgenError(f"refusing to write {slug!r}: it is not a plain folder inside the output folder {out}")
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{slug}-", dir=out.resolve()))
    os.chmod(staging, 0o755)  # a model folder readable like its files (mkdtemp makes it private)
    names: list[str] = []
    try:
        for name, content in files:
            write_file(staging, name, content)
            names.append(name)
        if target.is_dir():
            ours = set(names) | (set(names) if owned is None else set(owned))
            _carry_user_files(target, staging, keep=lambda name: name not in ours)
        journal(out, slug, names)
        _swap(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)  # after a swap: the old folder (the user's files live on in the new one)
    return [f"{slug}/{name}" for name in names]


def _carry_user_files(old: Path, new: Path, keep: Callable[[str], bool]) -> None:
    """Hard-link (or copy) into new every entry of old that keep() says is the user's, subfolders whole."""
    for entry in sorted(old.iterdir()):
        if not keep(entry.name):
            continue
        destination = new / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(destination))


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)
    return destination


def _swap(staging: Path, target: Path) -> None:
    """Put staging at target in one step; afterwards staging holds the old folder (if there was one)."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        return
    aside = target.parent / f"{ASIDE_PREFIX}{target.name}"
    if aside.exists():
        shutil.rmtree(aside)
    os.rename(target, aside)  # a death here is repaired by the next run: aside goes back
    os.rename(staging, target)
    os.rename(aside, staging)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP}:  # an old kernel, or a file system without it
        return False
    raise OSError(code, os.strerror(code), str(second))


# --- the index last, then the stale files -------------------------------------------------------

def index_last(out: Path, before: Owned | None, written: Iterable[str],
               write_index: Callable[[list[str]], Sequence[str]]) -> list[str]:
    """Write the index (its manifest: every file of this run) and then remove reportgen's files no run owns now.

    ``write_index(files)`` writes the index files, lists files and its own
    files as the manifest, and returns its own files' names. Until the stale
    files are gone the manifest still names them, so a run that dies meanwhile
    leaves them to the next one. Returns the stale files removed, relative to out.
    """
    written = sorted(written)
    left = sorted(set(_owned_paths(before)) - set(written))
    left = [relative for relative in left if (out / relative).is_file() and not (out / relative).is_symlink()]
    index_files = set(write_index(written + left))
    stale = [relative for relative in left if relative not in index_files]
    if not stale:
        return []
    for relative in stale:
        (out / relative).unlink(missing_ok=True)
    for folder in sorted({relative.rpartition("/")[0] for relative in stale} - {""}):
        with contextlib.suppress(OSError):  # a folder the user keeps files in stays, with them
            (out / folder).rmdir()
    write_index(written)
    return stale


def _owned_paths(owned: Owned | None) -> list[str]:
    if owned is None:
        return []
    return [f"{folder}/{name}" if folder else name for folder, names in owned.items() for name in names]
