"""The index's model table as a tool: one entry per model (report or failure) with what it sorts, filters and groups by.

Part of the view model (reportgen.render.view), split out so that each module
stays short. The table is static HTML that reads whole without scripts; the
page's one inline script (templates/index.js, allowed by the page's
Content-Security-Policy by its hash) only re-orders and hides rows, using the
sort keys and filter values arranged here. No torch here.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
import importlib.resources
from dataclasses import dataclass
from pathlib import PurePosixPath

from ..data import ModelFailure
from ..resolve import HUB_ID
from .jinja import TEMPLATES
from .view import IndexRow, IndexView

SCRIPT = "index.js"  # in the templates package, beside the templates
LOCAL = "local"  # the organisation of a model given as a path
UNKNOWN_TYPE = "unknown"  # the model type of a line that failed before its config was read
MERGE_STATUSES = ("passed", "failed", "error", "skipped", "not_run")  # not_applicable is offered apart
GROUPINGS = (("", "no grouping"), ("type", "model type"), ("org", "organisation"))


def is_local_id(model_id: str, source: str = "") -> bool:
    """Whether a model was given as a path (its report's source says so; else: not an org/name hub id)."""
    if source:
        return source.startswith("local")
    return not HUB_ID.match(model_id) or model_id.lower().endswith(".json")


def organisation(model_id: str, local: bool) -> str:
    """The part of a hub id before the slash; "local" for a path."""
    return LOCAL if local else model_id.split("/", 1)[0]


def _parts(path: str) -> tuple[str, ...]:
    return tuple(part for part in PurePosixPath(path.replace("\\", "/")).parts if part not in ("/", "."))


def short_names(paths: list[str]) -> dict[str, str]:
    """Each local path cut to the shortest tail of folders that no other path shares ("…/" marks the cut).

    A path ending in config.json keeps its folder too: the folder is what names the model.
    """
    split = {path: _parts(path) for path in paths}
    names: dict[str, str] = {}
    for path, parts in split.items():
        if not parts:
            names[path] = path
            continue
        least = 2 if parts and parts[-1].lower() == "config.json" else 1
        for size in range(min(least, len(parts)), len(parts) + 1):
            tail = parts[-size:]
            if sum(1 for other in split.values() if other[-size:] == tail) == 1:
                break
        if size >= len(parts):
            names[path] = path
        else:
            names[path] = "…/" + "/".join(tail)
    return names


@dataclass(frozen=True)
class Column:
    """One column of the model table: the sort key its rows carry, its heading, whether it sorts as a number."""

    key: str
    title: str
    numeric: bool = False
    note: str = ""


@dataclass(frozen=True)
class IndexEntry:
    """One line of the model table: a model's report, or a failed line of the models file."""

    id: str
    short: str
    organisation: str
    model_type: str
    status: str  # ok | mismatch | failed
    merge: str  # the merge check's status; "" for a failure
    row: IndexRow | None
    failure: ModelFailure | None

    @property
    def shortened(self) -> bool:
        return self.short != self.id

    @property
    def search(self) -> str:
        """What the text filter matches, lower-cased: id, model type, architecture, organisation, status."""
        words = [self.id, self.model_type, self.organisation, self.status, self.merge.replace("_", " ")]
        if self.row is not None:
            words.append(self.row.report.model.architecture)
        return " ".join(words).lower()

    def sort_keys(self, ranks: tuple[int, ...]) -> tuple[tuple[str, str], ...]:
        """(key, value) for every sortable column; "" where the line has no value (it sorts last)."""
        keys = [("model", self.id.lower()), ("type", self.model_type), ("status", self.status),
                ("merge", self.merge)]
        if self.row is None:
            return tuple(keys)
        report = self.row.report
        keys.append(("params", str(report.model.total_params)))
        for rank, cell in zip(ranks, self.row.headline_cells):
            keys.append((f"r{rank}", str(cell.formula_trainable) if cell.applicable else ""))
        totals = self.row.memory_totals
        keys.append(("memory", str(totals[0][1]) if totals else ""))
        keys.append(("peft", str(report.cells_confirmed)))
        return tuple(keys)


@dataclass(frozen=True)
class Counts:
    """The counts over the table: models reported, failed, with a mismatch, with a passed merge check."""

    reported: int
    failed: int
    mismatches: int
    merge_passed: int

    @property
    def cards(self) -> tuple[tuple[str, str, int], ...]:
        """(key the script updates, label, value) in the order the page shows them."""
        return (("reported", "Reported", self.reported), ("failed", "Failed", self.failed),
                ("mismatch", "Mismatches", self.mismatches), ("merge-passed", "Merge checks passed",
                                                              self.merge_passed))


@dataclass(frozen=True)
class IndexTable:
    """The model table with its columns, entries, counts, filter choices and the script that drives it."""

    columns: tuple[Column, ...]
    entries: tuple[IndexEntry, ...]
    counts: Counts
    ranks: tuple[int, ...]
    script: str

    @property
    def script_hash(self) -> str:
        """The CSP source that allows exactly the inline script: 'sha256-<base64 digest>'."""
        digest = hashlib.sha256(self.script.encode("utf-8")).digest()
        return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"

    @property
    def statuses(self) -> tuple[tuple[str, str, int], ...]:
        """The model statuses to filter by: (value, label, models)."""
        found = Counter(entry.status for entry in self.entries)
        return tuple((f"status:{name}", name, found[name]) for name in ("ok", "mismatch", "failed"))

    @property
    def merge_statuses(self) -> tuple[tuple[str, str, int], ...]:
        """The merge-check statuses to filter by, not_applicable left to its own group: (value, label, models)."""
        found = Counter(entry.merge for entry in self.entries)
        return tuple((f"merge:{name}", name.replace("_", " "), found[name]) for name in MERGE_STATUSES)

    @property
    def not_applicable(self) -> int:
        """Models whose merge check does not apply."""
        return sum(1 for entry in self.entries if entry.merge == "not_applicable")

    @property
    def groupings(self) -> tuple[tuple[str, str], ...]:
        return GROUPINGS


def counts(entries: tuple[IndexEntry, ...]) -> Counts:
    """The counts the page opens with (the script recounts them over the rows a filter leaves)."""
    return Counts(
        reported=sum(1 for entry in entries if entry.row is not None),
        failed=sum(1 for entry in entries if entry.failure is not None),
        mismatches=sum(1 for entry in entries if entry.status == "mismatch"),
        merge_passed=sum(1 for entry in entries if entry.merge == "passed"),
    )


def columns(ranks: tuple[int, ...], memory_setting: str) -> tuple[Column, ...]:
    """The model table's columns, in order."""
    return (
        Column("model", "Model"), Column("type", "Type"), Column("params", "Parameters", numeric=True),
        *(Column(f"r{rank}", f"All linear, r={rank}", numeric=True) for rank in ranks),
        Column("memory", "Memory", numeric=True, note=memory_setting),
        Column("peft", "PEFT agrees", numeric=True), Column("merge", "Merge check"), Column("status", "Status"),
    )


def index_entries(view: IndexView) -> tuple[IndexEntry, ...]:
    """Every model of the run, reports first (models-file order), then the failures."""
    locals_ = [row.report.model.id for row in view.rows
               if is_local_id(row.report.model.id, row.report.model.source)]
    locals_ += [failure.id for failure in view.failures if is_local_id(failure.id)]
    short = short_names(sorted(set(locals_)))
    entries = []
    for row in view.rows:
        model = row.report.model
        local = model.id in short
        entries.append(IndexEntry(model.id, short.get(model.id, model.id), organisation(model.id, local),
                                  model.model_type, row.report.status, str(row.report.merge_check.status),
                                  row, None))
    for failure in view.failures:
        local = failure.id in short
        entries.append(IndexEntry(failure.id, short.get(failure.id, failure.id), organisation(failure.id, local),
                                  UNKNOWN_TYPE, "failed", "", None, failure))
    return tuple(entries)


def index_table(view: IndexView) -> IndexTable:
    """The model table of the index page."""
    entries = index_entries(view)
    return IndexTable(columns=columns(view.result.ranks, view.memory_setting), entries=entries,
                      counts=counts(entries), ranks=view.result.ranks,
                      script=importlib.resources.files(TEMPLATES).joinpath(SCRIPT).read_text(encoding="utf-8"))

