"""The study matrix: ranks, scenarios, methods and their options, from a TOML file kept in version control.

Example (every key optional; the default matrix is the walk-through's: lora at ranks 8 and 16)::

    ranks = [8, 16, 3, 12]
    methods = ["lora", "dora", "rslora", "lora_all_bias"]   # built-in names or [method.NAME] tables

    [scenario.attn_mlp]                # added to qv_only, qkvo, all_linear and one per module type
    targets = ["q_proj", "v_proj", "down_proj"]

    [method.lora_all_bias]
    method = "lora"
    bias = "all"
    modules_to_save = ["lm_head"]
    rank_pattern = { q_proj = 4 }
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Scenario
from .errors import UsageError
from .variants import BUILTIN_VARIANTS, DEFAULT_VARIANTS, Variant, make_variant

DEFAULT_RANKS = (8, 16)
KEYS = {"ranks", "methods", "scenario", "method"}


@dataclass(frozen=True)
class Matrix:
    """What every model is studied at: ranks x scenarios x method variants."""

    ranks: tuple[int, ...] = DEFAULT_RANKS
    variants: tuple[Variant, ...] = DEFAULT_VARIANTS
    scenarios: tuple[Scenario, ...] = ()  # beyond the seed three and the single-module ones


def load_matrix(path: Path) -> Matrix:
    """The matrix a TOML file declares (UsageError naming the file and the key at fault)."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the matrix file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_matrix(document)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None


def parse_matrix(document: dict[str, Any]) -> Matrix:
    """A matrix from a parsed TOML document."""
    unknown = sorted(set(document) - KEYS)
    if unknown:
        raise UsageError(f"unknown key {', '.join(unknown)} (allowed: {', '.join(sorted(KEYS))})")
    ranks = document.get("ranks", list(DEFAULT_RANKS))
    if not isinstance(ranks, list) or not ranks or not all(isinstance(r, int) and r > 0 for r in ranks):
        raise UsageError("ranks must be a list of positive integers, e.g. ranks = [8, 16]")
    defined = {name: _variant(name, table) for name, table in _tables(document, "method").items()}
    names = document.get("methods", list(defined) or ["lora"])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError('methods must be a list of names, e.g. methods = ["lora", "dora"]')
    variants: list[Variant] = []
    for name in names:
        variant = defined.get(name) or BUILTIN_VARIANTS.get(name)
        if variant is None:
            raise UsageError(f"method {name!r} is neither built in ({', '.join(BUILTIN_VARIANTS)}) "
                             "nor defined in a [method.NAME] table")
        variants.append(variant)
    scenarios = tuple(_scenario(name, table) for name, table in _tables(document, "scenario").items())
    unique = {variant.name: variant for variant in variants}  # options may hold dicts: keep by name
    return Matrix(tuple(dict.fromkeys(ranks)), tuple(unique.values()), scenarios)


def _tables(document: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    tables = document.get(key, {})
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise UsageError(f"{key} must hold [{key}.NAME] tables")
    return tables


def _variant(name: str, table: dict[str, Any]) -> Variant:
    options = dict(table)
    method = options.pop("method", "lora")
    return make_variant(name, str(method), options)


def _scenario(name: str, table: dict[str, Any]) -> Scenario:
    targets = table.get("targets")
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise UsageError(f'scenario {name!r} needs targets = ["module", ...]')
    return Scenario(name, tuple(targets), str(table.get("purpose", "matrix scenario")))
