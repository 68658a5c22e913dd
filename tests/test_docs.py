"""`reportgen docs`: the MkDocs (Material) site built strict from a report folder of two tiny models.

What is checked comes from the report folder itself (index.json, each report.md's image links),
not from the site builder: every model has its page in the navigation, every image a page shows is a
file of the site, every page links its self-contained report.html, and no page asks another host.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pytest
import yaml

from tests.families import tiny_config

if TYPE_CHECKING:
    from tests.conftest import Cli

USAGE = "Usage: reportgen docs [OPTIONS] [REPORTS]\nTry 'reportgen docs --help' for help.\n\n"


class Links(HTMLParser):
    """Every URL a page loads (img, script, link, iframe, source) and every link it offers (a href)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.anchors: list[str] = []
        self.nav: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href"):
            self.anchors.append(str(values["href"]))
        for name in ("src", "href", "srcset", "data"):
            if values.get(name) and tag in ("img", "script", "link", "iframe", "source", "object", "embed"):
                self.loads.append(str(values[name]))


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def local_target(site: Path, page: Path, url: str) -> Path | None:
    """The file a URL of a page points at ("/..." from the site's root: MkDocs' 404 page); None for a fragment."""
    path = unquote(urlparse(url).path)
    if not path:
        return None
    return (site / path.lstrip("/")) if path.startswith("/") else (page.parent / path).resolve()


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, run_cli: Cli) -> Path:
    """A report folder of the tiny Llama and the tiny GPT-2 (no merge check: the site is what is tested)."""
    root = tmp_path_factory.mktemp("docs")
    lines = []
    for family in ("llama", "gpt2"):
        (root / family).mkdir()
        (root / family / "config.json").write_text(json.dumps(tiny_config(family)))
        lines.append(root / family)
    result = run_cli.report(root, lines, "--no-merge-check", out=root / "reports")
    assert result.exit_code == 0, result.output
    return root / "reports"


@pytest.fixture(scope="module")
def built(reports: Path, run_cli: Cli) -> Path:
    site, project = reports.parent / "site", reports.parent / "project"
    result = run_cli("docs", reports, "--site", site, "--project", project)
    assert result.exit_code == 0, result.output
    # Quiet: one line of its own, nothing from MkDocs or the theme (no end-of-life banner).
    assert result.stdout == (f"built the docs site for 2 model(s) into {site}/ (home page: {site}/index.html; "
                             f"MkDocs project in {project}/)\n")
    assert result.stderr == ""
    return site


def test_home_page_and_one_page_per_model(reports: Path, built: Path) -> None:
    index = json.loads((reports / "index.json").read_text())
    home = parse(built / "index.html")
    pages = [f"{entry['slug']}/index.html" for entry in index["models"]]
    for page in pages:
        assert page in home.anchors  # in the navigation and in the cross-model table
        assert (built / page).is_file()
    # The home page is index.md: the cross-model chart and the table of both models.
    assert "cross_model.svg" in home.loads
    text = (built / "index.html").read_text()
    for entry in index["models"]:
        assert entry["id"] in text
    config = yaml.safe_load((reports.parent / "project" / "mkdocs.yml").read_text())
    assert config["strict"] is True and config["theme"]["font"] is False
    assert config["nav"][1]["Models"] == [{entry["id"]: f"{entry['slug']}/index.md"} for entry in index["models"]]


def test_each_model_page_shows_its_charts_and_links_its_html_report(reports: Path, built: Path) -> None:
    for entry in json.loads((reports / "index.json").read_text())["models"]:
        page = built / entry["slug"] / "index.html"
        links = parse(page)
        # Every image report.md shows (the charts and the LoRA diagram) is on the page and is a file of the site.
        images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (reports / entry["slug"] / "report.md").read_text())
        assert len(images) >= 4
        for image in images:
            assert image in links.loads
            assert (built / entry["slug"] / unquote(image)).is_file()
        assert "report.html" in links.anchors and "report.json" in links.anchors
        standalone = built / entry["slug"] / "report.html"
        assert standalone.read_bytes() == (reports / entry["slug"] / "report.html").read_bytes()


def test_no_page_loads_anything_from_another_host(built: Path) -> None:
    pages = sorted(built.rglob("*.html"))
    assert len(pages) >= 5  # home, two models, 404, and the report folder's own index page
    for page in pages:
        for url in parse(page).loads:
            assert not urlparse(url).scheme and not url.startswith("//"), f"{page} loads {url}"
            target = local_target(built, page, url)
            assert target is None or target.is_file(), f"{page} loads {url}, which the site lacks"
    for sheet in built.rglob("*.css"):
        assert not re.search(r"@import|url\((['\"]?)(https?:)?//", sheet.read_text()), sheet
    # The search index ships with the site: both models are in it.
    search = (built / "search" / "search_index.json").read_text()
    assert "gpt2" in search and "llama" in search


def test_a_site_url_gives_the_404_page_and_the_sitemap_full_addresses(
    reports: Path, run_cli: Cli, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    result = run_cli("docs", reports, "--site", site, "--site-url", "https://example.org/lora/")
    assert result.exit_code == 0, result.output
    stylesheets = [url for url in parse(site / "404.html").loads if url.endswith(".css")]
    assert stylesheets and all(url.startswith("/lora/assets/") for url in stylesheets)
    slug = json.loads((reports / "index.json").read_text())["models"][0]["slug"]
    assert f"<loc>https://example.org/lora/{slug}/index.html</loc>" in (site / "sitemap.xml").read_text()


def test_a_broken_image_fails_the_strict_build_in_one_line(reports: Path, run_cli: Cli, tmp_path: Path) -> None:
    broken = tmp_path / "reports"
    shutil.copytree(reports, broken)
    slug = json.loads((broken / "index.json").read_text())["models"][0]["slug"]
    (broken / slug / "params_by_module.svg").unlink()
    result = run_cli("docs", broken, "--site", tmp_path / "site")
    assert result.exit_code == 1
    assert result.stderr == ("Error: the docs site did not build (Aborted with 1 warnings in strict mode!): "
                             f"Doc file '{slug}/index.md' contains a link 'params_by_module.svg', but the target "
                             f"'{slug}/params_by_module.svg' is not found among documentation files\n")
    assert len(result.stderr.splitlines()) == 1


def test_a_folder_of_other_files_is_never_emptied(reports: Path, run_cli: Cli, tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    result = run_cli("docs", reports, "--site", mine)
    assert result.exit_code == 2
    assert result.stderr == (f"{USAGE}Error: --site {mine} holds files that reportgen did not build (the build "
                             "empties the folder first): give a new or empty folder\n")
    assert (mine / "notes.txt").read_text() == "keep me"
    inside = run_cli("docs", reports, "--site", reports / "site")
    assert inside.exit_code == 2
    assert "overlap: give the site a folder of its own" in inside.stderr
    partial = tmp_path / "partial"
    shutil.copytree(reports, partial)
    slug = json.loads((partial / "index.json").read_text())["models"][1]["slug"]
    (partial / slug / "report.md").unlink()
    whole = run_cli("docs", partial, "--site", tmp_path / "site")
    assert whole.exit_code == 2
    assert whole.stderr.endswith(f"Error: REPORTS: {(partial / slug).resolve()}/report.md is missing: the report "
                                 "folder is not whole (run reportgen report again)\n")
    missing = run_cli("docs", tmp_path / "nothing", "--site", tmp_path / "site")
    assert missing.exit_code == 2
    assert missing.stderr.endswith(f"Error: REPORTS: {tmp_path / 'nothing'} does not exist "
                                   "(give a folder that `reportgen report` wrote)\n")


@pytest.fixture
def served(built: Path) -> Iterator[str]:
    """The site served over HTTP on this machine only (as a static host or `python -m http.server` would)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(built)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.mark.browser
def test_the_site_in_chromium_shows_charts_searches_and_stays_on_the_site(served: str, reports: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, MISSING

    if not CHROMIUM.exists():
        pytest.skip(MISSING)
    ids = [entry["id"] for entry in json.loads((reports / "index.json").read_text())["models"]]
    requests: list[str] = []
    errors: list[str] = []
    ARTIFACTS.mkdir(exist_ok=True)
    all_images_shown = "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda request: requests.append(request.url))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(served + "index.html", wait_until="networkidle")
        nav = page.locator("nav.md-nav--primary a.md-nav__link").all_inner_texts()
        assert all(any(model_id in text for text in nav) for model_id in ids)
        assert page.locator("img[src='cross_model.svg']").count() == 1
        assert page.evaluate(all_images_shown) == 0
        page.screenshot(path=str(ARTIFACTS / "docs-home.png"), full_page=True)
        # A model page from the navigation: its charts and diagram drawn, its HTML report linked.
        page.locator("nav.md-nav--primary a.md-nav__link", has_text=ids[1]).first.click()
        page.wait_for_load_state("networkidle")
        assert page.locator("article img").count() >= 5 and page.evaluate(all_images_shown) == 0
        assert page.locator("article a[href='report.html']").count() >= 1
        page.screenshot(path=str(ARTIFACTS / "docs-model.png"), full_page=True)
        # Search: the theme's index, shipped with the site, finds the other model.
        page.locator("label.md-search__icon, .md-search__input").first.click()
        page.locator("input.md-search__input").press_sequentially("gpt2", delay=30)
        page.locator(".md-search-result__item").first.wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "docs-search.png"))
        browser.close()
    assert errors == []
    assert [url for url in requests if not url.startswith(served)] == []
