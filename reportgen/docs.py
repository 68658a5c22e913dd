"""The docs site: a report folder's Markdown staged as an MkDocs project (Material theme) and built strict.

The report folder keeps the contract's file names (index.md beside index.html, report.md beside
report.html), which one MkDocs site cannot hold, so the pages are staged in a project of their own:

    PROJECT/mkdocs.yml               written from templates/mkdocs.yml.j2
    PROJECT/docs/index.md            the report folder's index.md: the cross-model table, chart and failures
    PROJECT/docs/all-models.html     its index.html (self-contained), beside index.json and the chart
    PROJECT/docs/assets/reportgen.css  templates/docs.css, the theme's few adjustments
    PROJECT/docs/<slug>/index.md     a model's report.md, with links to its report.html and report.json
    PROJECT/docs/<slug>/...          its charts, report.html (self-contained) and report.json, as files

and built with ``mkdocs build --strict`` (every broken link or missing image fails the build).
MkDocs and the theme are an optional dependency: ``pip install 'reportgen[docs]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from .errors import ReportgenError, UsageError, one_line
from .report_folder import ReportFolder, read_folder
from .render.jinja import environment

DEFAULT_TITLE = "LoRA report"
SITE_MARKER = ".reportgen-site"  # left in a built site: the next build may replace that folder's contents
PROJECT_MARKER = "# Written by reportgen docs"  # the first line of a staged mkdocs.yml
COPIED = (".svg", ".png", ".html", ".json")  # a model folder's files the site carries beside its page
MODEL_PAGE = "index.md"
# The report folder's index.html: the site's own home page takes its name, so the site carries it as this.
STANDALONE_INDEX = "all-models.html"
STYLESHEET = "assets/reportgen.css"  # templates/docs.css: room for the wide tables
INSTALL_HINT = "pip install 'reportgen[docs]' (make docs installs it)"


@dataclass(frozen=True)
class ModelPage:
    """A model's page in the navigation."""

    title: str
    page: str  # relative to docs/


@dataclass(frozen=True)
class DocsSite:
    """What a build wrote: the site folder, the model pages and, when kept, the MkDocs project."""

    site: Path
    pages: tuple[ModelPage, ...]
    project: Path | None


def build_docs(reports: Path, site: Path, project: Path | None = None, title: str = DEFAULT_TITLE,
               site_url: str = "") -> DocsSite:
    """Stage the report folder as an MkDocs project (in project, else a temporary folder) and build it into site.

    site_url, where the site will be published, gives MkDocs' 404 page and sitemap their full addresses.
    """
    folder = read_folder(reports, "REPORTS")
    for page in [folder.path / "index.md", folder.path / "index.html",
                 *(folder.model_folder(entry) / "report.md" for entry in folder.entries)]:
        if not page.is_file():
            raise UsageError(f"REPORTS: {page} is missing: the report folder is not whole (run reportgen report again)")
    _check_site(site, reports, project)
    if project is not None:
        _check_project(project)
    _require_mkdocs()
    site.mkdir(parents=True, exist_ok=True)
    # Marked before the build, so that a failed build can be run again (MkDocs keeps hidden files when it cleans).
    (site / SITE_MARKER).write_text("a docs site built by `reportgen docs`; the next build replaces it\n")
    with contextlib.ExitStack() as stack:
        where = project or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reportgen-docs-")))
        pages = stage(folder, where, site, title, site_url)
        _mkdocs_build(where / "mkdocs.yml")
    return DocsSite(site, pages, project)


def stage(folder: ReportFolder, project: Path, site: Path, title: str, site_url: str = "") -> tuple[ModelPage, ...]:
    """Write project/mkdocs.yml and project/docs/ from the report folder; returns the model pages."""
    docs = project / "docs"
    if docs.exists():
        shutil.rmtree(docs)  # the project is reportgen's own (checked): last build's pages
    docs.mkdir(parents=True)
    home = (folder.path / "index.md").read_text(encoding="utf-8")
    pages: list[ModelPage] = []
    for entry in folder.entries:
        slug = str(entry["slug"])
        # The index links each model's report.md, which the site serves as the model folder's index.md.
        home = home.replace(f"]({quote(slug)}/report.md)", f"]({quote(slug)}/{MODEL_PAGE})")
        _stage_model(folder.model_folder(entry), docs / slug)
        pages.append(ModelPage(str(entry["id"]), f"{slug}/{MODEL_PAGE}"))
    home = home.replace("[index.html](index.html)", f"[{STANDALONE_INDEX}]({STANDALONE_INDEX})")
    (docs / "index.md").write_text(home, encoding="utf-8")
    for file in sorted(folder.path.iterdir()):
        if _plain_file(file) and file.suffix in (".svg", ".png", ".json"):
            shutil.copyfile(file, docs / file.name)
    shutil.copyfile(folder.path / "index.html", docs / STANDALONE_INDEX)
    (docs / STYLESHEET).parent.mkdir()
    (docs / STYLESHEET).write_text(resources.files("reportgen.templates").joinpath("docs.css").read_text("utf-8"))
    config = environment(html=False).get_template("mkdocs.yml.j2").render(
        reports=str(folder.path), title=title, models=pages, stylesheet=STYLESHEET, site_url=site_url,
        site_dir=os.path.relpath(site.resolve(), project.resolve()))
    (project / "mkdocs.yml").write_text(config, encoding="utf-8")
    return tuple(pages)


def _stage_model(source: Path, target: Path) -> None:
    """A model's page (its report.md, linking the HTML report and the JSON) and the files beside it."""
    target.mkdir(parents=True)
    for file in sorted(source.iterdir()):
        if _plain_file(file) and file.suffix in COPIED:
            shutil.copyfile(file, target / file.name)
    lines = (source / "report.md").read_text(encoding="utf-8").splitlines(keepends=True)
    heading = next((n for n, line in enumerate(lines) if line.startswith("# ")), 0)
    links = ("\n**This report as one file:** [report.html](report.html) (self-contained: opens anywhere, "
             "offline) · the data: [report.json](report.json)\n")
    lines.insert(heading + 1, links)
    (target / MODEL_PAGE).write_text("".join(lines), encoding="utf-8")


def _plain_file(path: Path) -> bool:
    """A regular file (not a link, not hidden, not a temporary file of a run in progress)."""
    return path.is_file() and not path.is_symlink() and not path.name.startswith(".")


def _check_site(site: Path, reports: Path, project: Path | None) -> None:
    """The site folder is new, empty or an earlier site, and holds neither the reports nor the project.

    (MkDocs empties the site folder before it builds.)
    """
    where = site.resolve()
    for name, other in (("report folder", reports), ("MkDocs project", project)):
        if other is not None and (where == other.resolve() or where in other.resolve().parents
                                  or other.resolve() in where.parents):
            raise UsageError(f"--site {site} and the {name} {other} overlap: give the site a folder of its own")
    if site.exists() and (not site.is_dir() or (any(site.iterdir()) and not (site / SITE_MARKER).is_file())):
        raise UsageError(f"--site {site} holds files that reportgen did not build (the build empties the folder "
                         "first): give a new or empty folder")


def _check_project(project: Path) -> None:
    """The project folder is new, empty or one reportgen staged (its docs/ is replaced)."""
    config = project / "mkdocs.yml"
    ours = config.is_file() and config.read_text(encoding="utf-8").startswith(PROJECT_MARKER)
    if project.exists() and (not project.is_dir() or (any(project.iterdir()) and not ours)):
        raise UsageError(f"--project {project} holds files that reportgen did not stage: give a new or empty folder")


def _require_mkdocs() -> None:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        raise ReportgenError(f"the docs site needs MkDocs and its Material theme: {INSTALL_HINT}") from None


def _mkdocs_build(config_file: Path) -> None:
    """mkdocs build --strict, quiet: only a failure is reported, in one line with MkDocs' first warnings."""
    # The theme announces its end of life (May 2027) on every run of `mkdocs`; Zensical, its successor, reads the
    # same mkdocs.yml (the README says how). The build output stays quiet.
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import MkDocsException

    with _mkdocs_warnings() as warnings:
        try:
            build(load_config(str(config_file), strict=True))
        except MkDocsException as exc:
            detail = "; ".join(message.rstrip(".") for message in warnings[:3]) + (f" (and {len(warnings) - 3} more)" if len(warnings) > 3 else "")
            raise ReportgenError(one_line(f"the docs site did not build ({exc.format_message()}): {detail}",
                                          limit=600)) from None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _mkdocs_warnings() -> Iterator[list[str]]:
    """MkDocs' warnings and errors collected instead of printed (its progress lines are not shown either)."""
    logger = logging.getLogger("mkdocs")
    handler = _Collect()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
