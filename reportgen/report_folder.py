"""Reading a written report folder back: its index.json and each model's report.json, as plain JSON.

``reportgen diff`` and ``reportgen docs`` start from a folder that ``reportgen report`` wrote (here or on
another machine, perhaps by another version), so they read the files, not the data model, and check
only what they rely on: anything else in the files (a field a newer version added) passes through.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ReportgenError, UsageError
from .output import inside

SLUG = re.compile(r"^[A-Za-z0-9._-]+$")  # what output.slugify writes: one plain folder name


@dataclass(frozen=True)
class ReportFolder:
    """A report folder as written: the index, and the report.json of each model it lists, by model id."""

    path: Path
    index: dict[str, Any]
    reports: dict[str, dict[str, Any]]  # model id -> report.json, in the index's order

    @property
    def schema_version(self) -> Any:
        return self.index.get("schema_version")

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The index's model entries (one per model that has a report), in the index's order."""
        return list(self.index["models"])

    @property
    def failures(self) -> dict[str, dict[str, Any]]:
        """The models that failed, by id: the index's failure entries."""
        return {str(failure.get("id")): failure for failure in self.index.get("failures", [])}

    def model_folder(self, entry: dict[str, Any]) -> Path:
        """The folder of one model, checked to stay inside the report folder."""
        return inside(self.path, str(entry["slug"]))


def read_folder(path: Path, label: str) -> ReportFolder:
    """The report folder at path; label ("OLD", "NEW", "REPORTS") names it in a one-line UsageError."""
    if not path.exists():
        raise UsageError(f"{label}: {path} does not exist (give a folder that `reportgen report` wrote)")
    if not path.is_dir():
        raise UsageError(f"{label}: {path} is not a folder (give a folder that `reportgen report` wrote)")
    index = _json(path / "index.json", label, f"{path} is not a report folder: it has no index.json")
    models = index.get("models") if isinstance(index, dict) else None
    if not isinstance(models, list) or not all(_is_entry(entry) for entry in models):
        raise UsageError(f"{label}: {path / 'index.json'} is not a reportgen index (no list of models with "
                         "id, slug and report)")
    reports: dict[str, dict[str, Any]] = {}
    for entry in models:
        if not SLUG.match(entry["slug"]) or entry["slug"] in (".", ".."):
            raise UsageError(f"{label}: {path / 'index.json'} gives model {entry['id']!r} the folder "
                             f"{entry['slug']!r}, which is not a folder name reportgen writes")
        try:
            file = inside(path, entry["report"])
        except ReportgenError:
            raise UsageError(f"{label}: {path / 'index.json'} points model {entry['id']!r} outside the "
                             f"folder ({entry['report']!r})") from None
        report = _json(file, label, f"{file} (model {entry['id']}) is missing: the folder is not whole")
        if not isinstance(report, dict):
            raise UsageError(f"{label}: {file} is not a reportgen report.json")
        reports[entry["id"]] = report
    return ReportFolder(path, index, reports)


def _is_entry(entry: Any) -> bool:
    return isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in ("id", "slug", "report"))


def _json(file: Path, label: str, missing: str) -> Any:
    """The parsed JSON of file, or a one-line UsageError: missing when there is no such file."""
    if not file.is_file():
        raise UsageError(f"{label}: {missing}")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{label}: cannot read {file}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{label}: {file} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
