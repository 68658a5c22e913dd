"""The Jinja2 environment both page formats share: templates/ at the project root, strict, with number filters."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

import reportgen

from ..data import REFERENCE, human_bytes, human_count
from .compare import method_title

TEMPLATES = Path(reportgen.__file__).parent.parent / "templates"


def count(value: int | None) -> str:
    """An exact count with thousands separators: 3,407,872 ("-" for none)."""
    return "-" if value is None else f"{value:,}"


def pct(value: float | None) -> str:
    """A percentage, two decimals as the walk-through prints them (three for very small shares)."""
    if value is None:
        return "-"
    return f"{value:.2f}%" if value >= 0.1 or value == 0 else f"{value:.3f}%"


def mega(value: float | None) -> str:
    """Millions already rounded by the data layer, with their unit: 67.11M."""
    return "-" if value is None else f"{value:.2f}M"


def human(value: int | None) -> str:
    """A count with a readable unit: 1.24B."""
    return "-" if value is None else human_count(value)


def gb(value: int | None) -> str:
    """A size in bytes with a readable unit: 2.47 GB, 45.09 MB."""
    return "-" if value is None else human_bytes(value)


def signed(value: int) -> str:
    """A difference with its sign and thousands separators: +12,582,912, -42,467,328, 0."""
    return f"{value:+,}" if value else "0"


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


FILTERS: dict[str, Callable[..., str]] = {"count": count, "pct": pct, "mega": mega, "human": human, "gb": gb,
                                            "yes_no": yes_no, "signed": signed, "method": method_title}


@functools.lru_cache(maxsize=None)
def environment(html: bool, finalize: Callable[[Any], Any] | None = None) -> jinja2.Environment:
    """A strict environment over templates/: HTML templates autoescaped, Markdown ones given finalize.

    One environment per kind for the whole process, so each template is compiled once.
    """
    if not TEMPLATES.is_dir():
        raise FileNotFoundError(f"reportgen's templates folder is missing: {TEMPLATES}")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html.j2", "css"), disabled_extensions=("md.j2",), default=True
        ) if html else False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=finalize,
    )
    env.filters.update(FILTERS)
    env.globals["reference"] = REFERENCE  # the walk-through's LoraConfig, one home for its r, alpha and targets
    return env
