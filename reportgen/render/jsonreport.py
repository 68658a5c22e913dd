"""report.json and index.json: the data model, machine-readable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..folder import MANIFEST_KEY
from ..data import MISMATCH, NO_MATCH, NOT_APPLICABLE, ModelReport, RunResult, to_jsonable


def report_json(report: ModelReport) -> str:
    """One model's report.json text (stable key order, trailing newline)."""
    payload: dict[str, Any] = {"schema_version": report.schema_version}
    payload.update(to_jsonable(report))
    payload.pop("slug")
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def index_json(result: RunResult, files: Sequence[str] = ()) -> str:
    """index.json: every model's key numbers and status, every failure with its error, and the files of the run.

    ``files``: the manifest, every file this run wrote in the output folder
    (relative paths, sorted); the next run removes those of dropped models.
    """
    models: list[dict[str, Any]] = []
    for report in result.reports:
        models.append(
            {
                "id": report.model.id,
                "slug": report.slug,
                "status": "ok" if report.all_confirmed else "mismatch",
                "report": f"{report.slug}/report.json",
                "total_params": report.model.total_params,
                "linear_params": report.model.linear_params,
                "model_type": report.model.model_type,
                "cells": len(report.cells),
                "cells_confirmed": sum(1 for cell in report.cells if cell.confirmed),
                "cells_mismatch": report.status_count(MISMATCH),
                "cells_not_applicable": report.status_count(NOT_APPLICABLE),
                "cells_no_match": report.status_count(NO_MATCH),
                "merge_check": report.merge_check.status,
            }
        )
    failures = [to_jsonable(failure) | {"status": "failed"} for failure in result.failures]
    payload = {
        "schema_version": result.reports[0].schema_version if result.reports else 1,
        "ranks": list(result.ranks),
        "models": models,
        "failures": failures,
        "notes": list(result.notes),
        "environment": to_jsonable(result.environment),
        MANIFEST_KEY: list(files),
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
