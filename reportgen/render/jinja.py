"""The Jinja2 environment every page format shares: reportgen.templates, strict, with number filters.

The templates live in templates/ at the project root; the package ships them as ``reportgen.templates``
(pyproject.toml maps the folder), so a checkout, an editable install and a wheel all load them the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jinja2

from .. import formatting
from ..data import REFERENCE
from .compare import method_title

TEMPLATES = "reportgen.templates"  # the package that holds the templates and report.css

# Every number filter is formatting's: the pages, the terminal and the charts write a figure the same way.
FILTERS: dict[str, Callable[..., str]] = {
    "count": formatting.count, "pct": formatting.pct, "mega": formatting.mega, "human": formatting.human,
    "gb": formatting.gb, "yes_no": formatting.yes_no, "signed": formatting.signed, "method": method_title,
}


@functools.lru_cache(maxsize=None)
def environment(html: bool, finalize: Callable[[Any], Any] | None = None) -> jinja2.Environment:
    """A strict environment over the templates: HTML templates autoescaped, Markdown ones given finalize.

    One environment per kind for the whole process, so each template is compiled once.
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATES, "."),  # through importlib: a folder or a zipped package
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
