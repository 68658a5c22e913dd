"""What changed between two report folders: models added and removed, changes of status, then every figure.

The comparison reads the folders' JSON (``folder.py``), not the data model, so that it works across
versions. Rows of a list are matched by what names them (a cell by scenario, method and rank, a module
row by tag and part, a memory row by method, scenario and rank); every other field is compared as it
is. A field that a later version adds is a change when both folders have the same schema version, and
is listed in a note, not compared, when their schema versions differ. The order of everything follows
the folders' own order, so the same two folders always give the same diff.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import MISMATCH
from .report_folder import ReportFolder, read_folder

# report.json fields that are the same for every model of a run: compared once, as the study.
STUDY_FIELDS = ("scenarios", "methods", "memory_assumptions")
NOT_PER_MODEL = {"schema_version", "ranks", "environment", *STUDY_FIELDS}
# index.json fields compared (the models' own numbers come from their report.json; anything else in the
# index, such as a list of the files written, describes the folder rather than the models).
INDEX_STUDY_FIELDS = ("ranks", "environment", "notes")

# What names a row of each list; a list not named here is matched by the first of GENERIC_KEYS that every
# row has, else by position. Only the key fields that both folders' rows carry are used.
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "modules": ("tag", "part"),
    "cells": ("scenario", "method", "rank"),
    "memory": ("method", "scenario", "rank"),
    "memory_assumptions": ("name",),
    "explanation": ("label",),
    "scenarios": ("name",),
}
GENERIC_KEYS = ("id", "name", "label", "tag")
# The figure an added or removed row is shown by.
HEADLINE = {"modules": "params", "cells": "formula_trainable", "memory": "total_bytes"}
LABELS = {"modules": "module", "cells": "cell", "memory": "memory", "memory_assumptions": "assumption",
          "explanation": "count", "scenarios": "scenario", "merge_check": "merge check",
          "peft_reference": "PEFT reference", "printouts": "printout", "environment": "libraries"}

CHANGED, ADDED, REMOVED = "changed", "added", "removed"


@dataclass(frozen=True)
class Change:
    """One difference: where (a model's row or part, or the study), which field, old and new."""

    model: str  # model id; "" for the study
    section: str  # the report.json field it is under: "cells", "merge_check", "model", ...
    where: str  # the row or part in words: "cell qkvo · lora · r=8", "merge check"
    field: str  # "formula_trainable"; a dotted path inside a row; "" for a value without fields
    old: Any  # None when kind is "added"
    new: Any  # None when kind is "removed"
    kind: str = CHANGED  # changed | added | removed (a row, or a field of one schema only)

    @property
    def difference(self) -> int | float | None:
        """new - old when both are numbers (not booleans), else None."""
        if self.kind != CHANGED or not (_number(self.old) and _number(self.new)):
            return None
        result: int | float = self.new - self.old
        return result

    @property
    def is_status(self) -> bool:
        """A change of status: a model's, a cell's to or from a mismatch, or the merge check's."""
        if self.section == "index":
            return self.field == "status"
        if self.section == "cells" and self.field == "status":
            return MISMATCH in (self.old, self.new)
        return self.section == "merge_check" and self.field == "status"


@dataclass(frozen=True)
class ModelLine:
    """A model in one folder only: its id, status and size."""

    id: str
    status: str
    total_params: int | None
    error: str = ""


@dataclass(frozen=True)
class FolderDiff:
    """Everything that differs between two report folders."""

    old: str
    new: str
    old_schema: Any
    new_schema: Any
    only_old: tuple[str, ...]  # fields of OLD's schema that NEW does not have (not compared)
    only_new: tuple[str, ...]
    added: tuple[ModelLine, ...]
    removed: tuple[ModelLine, ...]
    study: tuple[Change, ...]
    changes: tuple[Change, ...]  # every model's, in model order
    compared: tuple[str, ...]  # the models in both folders
    unchanged: tuple[str, ...] = field(default=())

    @property
    def schema_differs(self) -> bool:
        return bool(self.old_schema != self.new_schema)

    @property
    def status_changes(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.is_status)

    @property
    def changed(self) -> bool:
        """Anything at all differs (what --exit-code reports)."""
        return bool(self.schema_differs or self.added or self.removed or self.study or self.changes)

    def model_changes(self) -> list[tuple[str, tuple[Change, ...]]]:
        """Each changed model with its changes other than status ones, in model order."""
        grouped: dict[str, list[Change]] = {}
        for change in self.changes:
            if not change.is_status:
                grouped.setdefault(change.model, []).append(change)
        return [(model, tuple(changes)) for model, changes in grouped.items()]


def diff_folders(old: Path, new: Path) -> FolderDiff:
    """Compare two report folders; a missing folder or one that is not a report folder is a UsageError."""
    before, after = read_folder(old, "OLD"), read_folder(new, "NEW")
    compare = _Comparer(before.schema_version != after.schema_version)
    study = compare.study(before, after)
    ids_before, ids_after = _ids(before), _ids(after)
    compared = tuple(model for model in ids_after if model in ids_before)
    changes: list[Change] = []
    unchanged: list[str] = []
    for model in compared:
        found = compare.model(model, before, after)
        changes += found
        if not found:
            unchanged.append(model)
    return FolderDiff(
        old=str(old), new=str(new), old_schema=before.schema_version, new_schema=after.schema_version,
        only_old=tuple(sorted(compare.only_old)), only_new=tuple(sorted(compare.only_new)),
        added=tuple(_line(after, model) for model in ids_after if model not in ids_before),
        removed=tuple(_line(before, model) for model in ids_before if model not in ids_after),
        study=tuple(study), changes=tuple(changes), compared=compared, unchanged=tuple(unchanged),
    )


def _ids(folder: ReportFolder) -> list[str]:
    """Every model of a folder, reported or failed, in the index's order."""
    ids = [str(entry["id"]) for entry in folder.entries]
    return ids + [model for model in folder.failures if model not in ids]


def _status(folder: ReportFolder, model: str) -> str:
    entry = next((entry for entry in folder.entries if entry["id"] == model), None)
    return str(entry.get("status", "ok")) if entry is not None else "failed"


def _line(folder: ReportFolder, model: str) -> ModelLine:
    if model in folder.reports:
        total = folder.reports[model].get("model", {}).get("total_params")
        return ModelLine(model, _status(folder, model), total if _number(total) else None)
    return ModelLine(model, "failed", None, str(folder.failures[model].get("error", "")))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(old: Any, new: Any) -> bool:
    """Equal as JSON values (1 and True differ; key order does not matter)."""
    return json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)


class _Comparer:
    """Walks two JSON documents; fields of one schema only are collected, not compared, when schemas differ."""

    def __init__(self, schemas_differ: bool) -> None:
        self.schemas_differ = schemas_differ
        self.only_old: set[str] = set()
        self.only_new: set[str] = set()

    def study(self, before: ReportFolder, after: ReportFolder) -> list[Change]:
        """Ranks, libraries and notes from the indexes; scenarios, methods and assumptions from a report."""
        changes: list[Change] = []
        self.mapping("", "index", {key: before.index[key] for key in INDEX_STUDY_FIELDS if key in before.index},
                     {key: after.index[key] for key in INDEX_STUDY_FIELDS if key in after.index}, changes)
        if before.reports and after.reports:
            first_before, first_after = next(iter(before.reports.values())), next(iter(after.reports.values()))
            self.mapping("", "report", {key: first_before[key] for key in STUDY_FIELDS if key in first_before},
                         {key: first_after[key] for key in STUDY_FIELDS if key in first_after}, changes)
        return changes

    def model(self, model: str, before: ReportFolder, after: ReportFolder) -> list[Change]:
        """One model present in both folders: its status, then every field of its report.json."""
        old_status, new_status = _status(before, model), _status(after, model)
        changes: list[Change] = []
        if old_status != new_status:
            changes.append(Change(model, "index", "model", "status", old_status, new_status))
        old_error, new_error = before.failures.get(model, {}).get("error"), after.failures.get(model, {}).get("error")
        if old_error != new_error:  # why it failed (or no longer fails)
            kind = ADDED if old_error is None else REMOVED if new_error is None else CHANGED
            changes.append(Change(model, "index", "model", "error", old_error, new_error, kind))
        if model not in before.reports or model not in after.reports:
            return changes
        old_report = {k: v for k, v in before.reports[model].items() if k not in NOT_PER_MODEL}
        new_report = {k: v for k, v in after.reports[model].items() if k not in NOT_PER_MODEL}
        self.mapping(model, "report", old_report, new_report, changes)
        return changes

    def mapping(self, model: str, path: str, old: dict[str, Any], new: dict[str, Any], out: list[Change],
                section: str = "", where: str = "", prefix: str = "") -> None:
        """The fields of two objects; at the top (no section yet) each field is a section of its own."""
        top = not section
        for key in [*old, *(key for key in new if key not in old)]:
            part = section or key
            here = where or LABELS.get(key, key)
            name = f"{prefix}.{key}" if prefix else ("" if top else key)
            if key not in old or key not in new:
                self._one_sided(Change(model, part, here, name or key, old.get(key), new.get(key),
                                       ADDED if key not in old else REMOVED), f"{path}.{key}", out)
            elif _rows(old[key], new[key]):
                self.rows(model, key, f"{path}.{key}", old[key], new[key], out)
            elif isinstance(old[key], dict) and isinstance(new[key], dict):
                self.mapping(model, f"{path}.{key}", old[key], new[key], out, part, here, name)
            elif not _same(old[key], new[key]):
                out.append(Change(model, part, here, name, old[key], new[key]))

    def _one_sided(self, change: Change, path: str, out: list[Change]) -> None:
        """A field in one folder only: noted (not compared) when the schemas differ, else a change."""
        if self.schemas_differ:
            (self.only_new if change.kind == ADDED else self.only_old).add(_shape(path))
        else:
            out.append(change)

    def rows(self, model: str, name: str, path: str, old: list[dict[str, Any]], new: list[dict[str, Any]],
             out: list[Change]) -> None:
        """Two lists of rows, matched by what names them; rows in one list only are added or removed."""
        fields = _key_fields(name, old, new)
        old_rows, new_rows = _keyed(old, fields), _keyed(new, fields)
        label = LABELS.get(name, name)
        headline = HEADLINE.get(name, "")
        for key, row in new_rows.items():
            where = _row_label(label, key)
            if key in old_rows:
                self.mapping(model, f"{path}[]", old_rows[key], row, out, name, where)
            else:
                out.append(Change(model, name, where, headline, None, row.get(headline), ADDED))
        for key, row in old_rows.items():
            if key not in new_rows:
                out.append(Change(model, name, _row_label(label, key), headline, row.get(headline), None, REMOVED))


def _rows(old: Any, new: Any) -> bool:
    """Both are lists of objects (rows to match), at least one of them not empty."""
    return (isinstance(old, list) and isinstance(new, list) and bool(old or new)
            and all(isinstance(row, dict) for row in [*old, *new]))


def _key_fields(name: str, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> tuple[str, ...]:
    """The fields that name a row of this list and that every row of both lists has."""
    rows = [*old, *new]
    candidates = ROW_KEYS.get(name) or next(((key,) for key in GENERIC_KEYS if all(key in row for row in rows)), ())
    return tuple(key for key in candidates if all(key in row for row in rows))


def _keyed(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Rows by (key values..., occurrence): the n-th row with the same key values is told apart by n."""
    seen: Counter[str] = Counter()
    keyed: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        values = tuple(row.get(key) for key in fields)
        text = json.dumps(values)
        keyed[(*values, seen[text])] = row
        seen[text] += 1
    return keyed


def _row_label(label: str, key: tuple[Any, ...]) -> str:
    """A row in words: "cell qkvo · lora · r=8", "module q_proj · language model", "memory full · all_parameters"."""
    *values, occurrence = key
    parts = [f"r={value}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
             for value in values if value is not None]
    if not values:
        parts = [f"#{occurrence + 1}"]
    elif occurrence:
        parts.append(f"#{occurrence + 1}")
    return f"{label} {' · '.join(parts)}"


def _shape(path: str) -> str:
    """A field's place in report.json or index.json, for the schema note: "cells[].status", "warnings"."""
    kind, _, rest = path.partition(".")
    return rest if kind == "report" else f"index.json {rest}"
