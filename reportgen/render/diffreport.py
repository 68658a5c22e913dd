"""`reportgen diff` as Markdown (a pull-request comment) or JSON (for other tools), from one FolderDiff."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..diff import ADDED, REMOVED, Change, FolderDiff, ModelLine
from ..formatting import count, gb, human, human_bytes, signed
from .markdown import SUMMARY_LIMIT
from .markdown import _environment as markdown_environment

LONG_TEXT = 100  # characters of a text value the Markdown shows before cutting it


@dataclass(frozen=True)
class DiffRow:
    """One change as the Markdown table shows it: every cell already written out."""

    model: str
    where: str
    field: str
    old: str
    new: str
    difference: str


@dataclass(frozen=True)
class ModelSection:
    """A changed model's rows, the first `shown` of them printed."""

    model: str
    rows: tuple[DiffRow, ...]
    shown: int

    @property
    def hidden(self) -> int:
        return len(self.rows) - self.shown


def diff_markdown(diff: FolderDiff, limit: int = SUMMARY_LIMIT) -> str:
    """The diff as Markdown that fits a pull-request comment: long model sections are cut to fit under limit."""
    template = markdown_environment().get_template("diff.md.j2")
    sections = [(model, tuple(_row(change) for change in changes)) for model, changes in diff.model_changes()]
    shown = max((len(rows) for _, rows in sections), default=0)
    while True:
        models = [ModelSection(model, rows, min(shown, len(rows))) for model, rows in sections]
        text = template.render(d=diff, summary=summary(diff), status=[_row(c) for c in diff.status_changes],
                               study=[_row(c) for c in diff.study], models=models,
                               added=[_model_line(line) for line in diff.added],
                               removed=[_model_line(line) for line in diff.removed])
        if len(text) < limit or shown == 0:
            return text
        shown = max(0, shown - max(1, shown // 5))


def summary(diff: FolderDiff) -> str:
    """The diff in one sentence."""
    changed = len({change.model for change in diff.changes})
    parts = [f"{len(diff.compared)} model{'' if len(diff.compared) == 1 else 's'} in both"]
    if diff.added:
        parts.append(f"{len(diff.added)} added")
    if diff.removed:
        parts.append(f"{len(diff.removed)} removed")
    if not diff.changed:
        return f"No changes: {', '.join(parts)}, every figure the same."
    return f"{', '.join(parts)}; {changed} with changes."


def _model_line(line: ModelLine) -> str:
    if line.status == "failed":
        return f"failed: {line.error}" if line.error else "failed"
    return f"{line.status}, {human(line.total_params)} parameters" if line.total_params is not None else line.status


def _row(change: Change) -> DiffRow:
    field = change.field
    old = "-" if change.kind == ADDED else _value(change.old, field)
    new = "-" if change.kind == REMOVED else _value(change.new, field)
    if change.kind in (ADDED, REMOVED):
        difference = change.kind
    else:
        difference = _difference(change.old, change.new, field)
    return DiffRow(change.model, change.where, field, old, new, difference)


def _value(value: Any, field: str) -> str:
    """A JSON value written for the table: counts with separators, bytes in GB, long text cut."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return gb(value) if field.endswith("_bytes") else count(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        if all(not isinstance(item, (dict, list)) for item in value):
            return ", ".join(_value(item, "") for item in value) or "(none)"
        return f"{len(value)} entries"
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = str(value)
    if "\n" in text.rstrip("\n"):
        return f"{len(text.splitlines())} lines of text"
    return text if len(text) <= LONG_TEXT else text[: LONG_TEXT - 1].rstrip() + "…"


def _difference(old: Any, new: Any, field: str) -> str:
    """new - old with its sign, and the relative change for counts; "" where values are not numbers."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (old, new))
    if not numbers:
        return ""
    delta = new - old
    if isinstance(delta, float):
        return f"{delta:+.3g}"
    text = f"{'+' if delta > 0 else '-'}{human_bytes(abs(delta))}" if field.endswith("_bytes") else signed(delta)
    if not old:
        return text
    relative = 100 * delta / old
    return f"{text} ({'+' if delta > 0 else '-'}<0.1%)" if abs(relative) < 0.05 else f"{text} ({relative:+.1f}%)"


def diff_json(diff: FolderDiff) -> str:
    """The same changes as JSON: every value as the report folders hold it (stable order, trailing newline)."""
    payload = {
        "old": diff.old,
        "new": diff.new,
        "changed": diff.changed,
        "summary": summary(diff),
        "schema_version": {"old": diff.old_schema, "new": diff.new_schema},
        "only_in_old_schema": list(diff.only_old),
        "only_in_new_schema": list(diff.only_new),
        "added": [_line_json(line) for line in diff.added],
        "removed": [_line_json(line) for line in diff.removed],
        "status": [_change_json(change) for change in diff.status_changes],
        "study": [_change_json(change) for change in diff.study],
        "models": [{"id": model, "changes": [_change_json(change) for change in changes]}
                   for model, changes in diff.model_changes()],
        "unchanged": list(diff.unchanged),
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def _line_json(line: ModelLine) -> dict[str, Any]:
    return {"id": line.id, "status": line.status, "total_params": line.total_params, "error": line.error}


def _change_json(change: Change) -> dict[str, Any]:
    return {"model": change.model, "section": change.section, "where": change.where, "field": change.field,
            "kind": change.kind, "old": change.old, "new": change.new, "difference": change.difference}
