"""The real page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright): renders, stays offline."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reportgen.render.site import write_site
from tests.update_gold import GOLD_SLUG, gold_result

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"

MISSING = "Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium; .ci/run does it)"
if not CHROMIUM.exists() and os.environ.get("REPORTGEN_REQUIRE_BROWSER"):
    # CI sets this: there, a missing browser is a failure, never a quiet skip.
    raise RuntimeError(MISSING)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=MISSING),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser-site")
    write_site(gold_result(), out)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # the test extra pins playwright==1.65.2

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Visit:
    """A page opened from file://, with every console error, page error and request it made."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.url = path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(self.url, wait_until="load")


def test_report_page_renders_offline(browser: Any, site: Path) -> None:
    visit = Visit(browser, site / GOLD_SLUG / "report.html")
    page = visit.page
    # Tables: the module table has the seven module types of Llama 3.2 1B, each with its 16 layers.
    module_rows = page.locator("#modules tbody tr")
    assert module_rows.count() == 7
    assert module_rows.first.locator("td").nth(4).inner_text() == f"{2048 * 2048 * 16:,}"
    # count explanation, modules, scenarios, per module, the three memory tables (one method: no side by side)
    assert page.locator("table").count() == 7
    # Charts: four inline SVG charts and the diagram, each laid out at a real size.
    figures = page.locator(".figure.chart svg")
    assert figures.count() == 4
    for index in range(figures.count()):
        box = figures.nth(index).bounding_box()
        assert box is not None and box["width"] > 400 and box["height"] > 150
    diagram = page.locator("svg.lora-diagram").bounding_box()
    assert diagram is not None and diagram["width"] > 200
    assert "trainable params: 3,407,872 || all params: 1,239,222,272 || trainable%: 0.2750" in page.inner_text(
        "#peft")
    # Fine-tuning memory: reachable from the section nav, its tables and chart visible.
    page.click('nav.toc a[href="#memory"]')
    memory = page.locator("#memory")
    assert memory.is_visible() and memory.locator("h2").inner_text() == "Fine-tuning memory"
    frozen = memory.locator("table.memory tbody tr", has_text="Frozen weights").locator("td")
    assert frozen.nth(2).inner_text() == "2.47 GB"  # LoRA's bf16 frozen base: 1,235,814,400 * 2 bytes
    assert memory.locator("table.memory .mark.ok").count() == 9  # 3 methods x 3 GPU sizes, all fit
    chart = memory.locator(".figure.chart svg")
    assert chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 200
    labels = chart.text_content() or ""
    from tests.test_render_memory import ASSUMPTIONS, GB

    assert "24 GiB GPU" in labels and "80 GiB GPU" in labels and GB[1] in labels  # LoRA's total, by hand there
    assert memory.locator("table.assumptions tbody tr").count() == len(ASSUMPTIONS)
    assert "Korthikanti et al. 2022" in memory.locator("table.assumptions").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    memory.screenshot(path=str(ARTIFACTS / "memory.png"))
    # The architecture printouts are collapsed, and expand.
    for name in ("base", "peft", "merged"):
        details = page.locator(f"#printout-{name}")
        assert not details.locator("pre").is_visible()
        details.locator("summary").click()
        assert details.get_attribute("open") is not None
        assert details.locator("pre").is_visible()
    assert "q_proj" in page.locator("#printout-base pre").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert visit.errors == []
    assert visit.requests == [visit.url]


def test_index_page_links_every_model(browser: Any, site: Path) -> None:
    visit = Visit(browser, site / "index.html")
    page = visit.page
    assert page.locator("#models tbody tr").count() == 2  # the model and the failure
    assert gold_result().failures[0].error in page.inner_text("#models tbody tr.failure")
    assert page.locator("#chart svg").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    assert visit.errors == [] and visit.requests == [visit.url]
    page.click(f'a[href="{GOLD_SLUG}/report.html"]')
    page.wait_for_load_state("load")
    assert page.url == (site / GOLD_SLUG / "report.html").resolve().as_uri()
    assert page.locator("h1").inner_text() == "meta-llama/Llama-3.2-1B-Instruct"
