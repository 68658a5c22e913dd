"""Markdown pages (GitHub and MkDocs): report.md per model, index.md and summary.md for the site."""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from ..data import ModelReport, RunResult
from .jinja import environment
from .view import ChartRef, index_view, report_view

# Characters that Markdown (CommonMark, GFM tables) would read as markup inside a line; a backslash
# makes each literal. "(" and "!" need none once "[" is escaped, so the raw text stays readable.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")
SUMMARY_LIMIT = 60_000  # a pull-request comment holds 65,536 characters; stay well under
SUMMARY_FAILURES = 10  # failures summary.md lists with their errors; the rest are counted
CLIP = 120  # characters of a model id summary.md shows


def md_escape(value: Any) -> Any:
    """Every value a Markdown template prints: literal text, unless a filter built it as Markup."""
    if isinstance(value, Markup):
        return value
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def code(value: object) -> Markup:
    """An inline code span that holds any text, a table's "|" included."""
    text = str(value).replace("|", "\\|").replace("\n", " ")
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    # Markup: built here from the value, which a code span shows as literal text.
    return Markup(f"{ticks}{pad}{text}{pad}{ticks}")


def clip(value: object, most: int = CLIP) -> str:
    """Text cut to at most `most` characters, an ellipsis marking the cut (a summary stays short)."""
    text = str(value)
    return text if len(text) <= most else text[: most - 1] + "…"


def url(value: object) -> Markup:
    """A relative link destination, percent-encoded (slugs and chart names are already plain)."""
    # Markup: quote() leaves only unreserved characters and "/", which Markdown reads literally.
    return Markup(quote(str(value)))


def fence(value: object) -> Markup:
    """A fenced text block longer than any run of backticks inside it."""
    text = str(value).rstrip("\n")
    ticks = "`" * max(3, max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    # Markup: a fenced block shows its contents as literal text.
    return Markup(f"{ticks}text\n{text}\n{ticks}")


@functools.lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    """The Markdown environment with its filters, set up once."""
    env = environment(html=False, finalize=md_escape)
    env.filters.update({"code": code, "fence": fence, "url": url, "clip": clip})
    return env


def report_markdown(report: ModelReport, charts: tuple[ChartRef, ...] = ()) -> str:
    """One model's report.md (charts and the diagram as relative links to files beside it)."""
    return _environment().get_template("report.md.j2").render(v=report_view(report, charts))


def index_markdown(result: RunResult, charts: tuple[ChartRef, ...] = ()) -> str:
    """index.md: every model linked by relative path with its key numbers, and every failure."""
    return _environment().get_template("index.md.j2").render(v=index_view(result, charts))


def summary_markdown(result: RunResult, limit: int = SUMMARY_LIMIT) -> str:
    """summary.md: the cross-model table for a pull-request comment, cut to fit under limit characters.

    The mismatch banner and the failure list are bounded; the table then loses rows (those needing attention
    stay first) until the whole text fits.
    """
    template = _environment().get_template("summary.md.j2")
    view = index_view(result)
    shown = len(view.rows)
    failures_shown = min(len(view.failures), SUMMARY_FAILURES)
    while True:
        text = template.render(v=view, shown=shown, hidden=len(view.rows) - shown, failures_shown=failures_shown)
        if len(text) < limit or (shown == 0 and failures_shown == 0):
            return text
        if shown:
            shown = max(0, shown - max(1, shown // 10))
        else:
            failures_shown -= 1
