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
        self.refused: dict[str, str] = {}
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("requestfailed", lambda request: self.refused.update({request.url: request.failure or ""}))
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
    assert page.locator("#chart svg").count() == 2  # size against trainables, share of the model trained
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "index.png"), full_page=True)
    assert visit.errors == [] and visit.requests == [visit.url]
    page.click(f'a[href="{GOLD_SLUG}/report.html"]')
    page.wait_for_load_state("load")
    assert page.url == (site / GOLD_SLUG / "report.html").resolve().as_uri()
    assert page.locator("h1").inner_text() == "meta-llama/Llama-3.2-1B-Instruct"


# --- an index of many models: a tool that sorts, filters, groups and counts -----------------------------------

HIGHLIGHT = "acme/llama-width-1-step500"  # a model of tests/many_models.py, named as --highlight would name it

# Every table cell inside the window, or inside a box that scrolls sideways and is itself inside the window;
# no cell whose own content overflows it; the page itself never scrolls sideways.
CUT_OFF_CELLS = """() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > width) problems.push("the page scrolls sideways");
  for (const cell of document.querySelectorAll("table td, table th")) {
    if (cell.offsetParent === null) continue;  // a hidden row or a closed part
    const text = cell.textContent.trim().slice(0, 50);
    if (cell.scrollWidth > cell.clientWidth + 1) problems.push("overflows its cell: " + text);
    const rect = cell.getBoundingClientRect();
    if (rect.left >= -0.5 && rect.right <= width + 0.5) continue;
    let box = cell.parentElement;
    while (box && box !== document.body) {
      const style = getComputedStyle(box);
      if (["auto", "scroll"].includes(style.overflowX) && box.scrollWidth > box.clientWidth) break;
      box = box.parentElement;
    }
    if (!box || box === document.body) { problems.push("cut off: " + text); continue; }
    const outer = box.getBoundingClientRect();
    if (outer.left < -0.5 || outer.right > width + 0.5) problems.push("scroll box outside the window: " + text);
  }
  return problems;
}"""

ROW_ORDER = "() => Array.from(document.querySelectorAll('#model-table tbody tr.entry:not([hidden])'))" \
            ".map(row => row.dataset.model)"


@pytest.fixture(scope="module")
def many() -> Any:
    from tests.many_models import many_models

    return many_models()


@pytest.fixture(scope="module")
def many_site(tmp_path_factory: pytest.TempPathFactory, many: Any) -> Path:
    from reportgen.render.site import write_index

    out = tmp_path_factory.mktemp("many-site")
    write_index(many, out, highlight=(HIGHLIGHT,))
    return out


def _counts(page: Any) -> dict[str, str]:
    keys = ("reported", "failed", "mismatch", "merge-passed")
    return {key: page.locator(f'[data-count="{key}"]').inner_text() for key in keys}


def test_index_of_many_models_sorts_filters_and_counts(browser: Any, many_site: Path, many: Any) -> None:
    visit = Visit(browser, many_site / "index.html")
    page = visit.page
    reports, failures = many.reports, many.failures
    assert len(reports) + len(failures) >= 150
    assert page.locator("#model-table tbody tr.entry").count() == len(reports) + len(failures)
    assert page.locator("#shown").inner_text() == f"all {len(reports) + len(failures)} models shown"
    ids = [report.model.id.lower() for report in reports]
    failed = [failure.id.lower() for failure in failures]
    # Sort by size, smallest first, then largest first: ties keep the models file's order, failures last.
    page.click('button[data-key="params"]')
    order = sorted(range(len(reports)), key=lambda i: (reports[i].model.total_params, i))
    assert page.evaluate(ROW_ORDER) == [ids[i] for i in order] + failed
    assert page.locator('th:has(button[data-key="params"])').get_attribute("aria-sort") == "ascending"
    page.click('button[data-key="params"]')
    order = sorted(range(len(reports)), key=lambda i: (-reports[i].model.total_params, i))
    assert page.evaluate(ROW_ORDER) == [ids[i] for i in order] + failed
    # Sort by the r=16 trainables (a second numeric column), then by model id (text).
    page.click('button[data-key="r16"]')
    trainables = [report.cell("all_linear", 16).formula_trainable for report in reports]
    order = sorted(range(len(reports)), key=lambda i: (trainables[i], i))
    assert page.evaluate(ROW_ORDER) == [ids[i] for i in order] + failed
    page.click('button[data-key="model"]')
    assert page.evaluate(ROW_ORDER) == sorted(ids + failed)
    first = page.locator("#model-table tbody tr.entry").first.locator("td.model a, td.model span").first
    assert (first.get_attribute("title") or first.inner_text()).lower() == sorted(ids + failed)[0]
    # Filter by text: the counts follow.
    page.fill("#filter-text", "gemma3")
    gemma3 = [report for report in reports if report.model.model_type == "gemma3"]
    assert len(page.evaluate(ROW_ORDER)) == len(gemma3) > 0
    assert _counts(page) == {"reported": str(len(gemma3)), "failed": "0",
                             "mismatch": str(sum(1 for r in gemma3 if r.mismatches)),
                             "merge-passed": str(sum(1 for r in gemma3 if r.merge_check.status == "passed"))}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "index-many-filtered.png"))
    page.fill("#filter-text", "")
    # Filter by status: failures, mismatches, merge checks failed, not applicable apart.
    page.select_option("#filter-status", "status:failed")
    assert page.evaluate(ROW_ORDER) == sorted(failed)
    assert _counts(page) == {"reported": "0", "failed": str(len(failures)), "mismatch": "0", "merge-passed": "0"}
    page.select_option("#filter-status", "status:mismatch")
    mismatched = [report for report in reports if report.mismatches]
    assert len(page.evaluate(ROW_ORDER)) == len(mismatched) > 0
    assert _counts(page)["mismatch"] == _counts(page)["reported"] == str(len(mismatched))
    for status in ("failed", "error", "skipped", "not_applicable"):
        page.select_option("#filter-status", f"merge:{status}")
        expected = sorted(report.model.id.lower() for report in reports if report.merge_check.status == status)
        assert page.evaluate(ROW_ORDER) == expected and expected, status
    page.select_option("#filter-status", "attention:")
    attention = [r for r in reports if r.mismatches or r.merge_check.status in ("failed", "error")]
    assert len(page.evaluate(ROW_ORDER)) == len(attention) + len(failures)
    # Text and status together; then group what is left by model type.
    page.fill("#filter-text", "acme/")
    page.select_option("#filter-status", "merge:passed")
    acme = [r for r in reports if r.model.id.startswith("acme/") and r.merge_check.status == "passed"]
    assert len(page.evaluate(ROW_ORDER)) == len(acme) > 0
    assert _counts(page)["merge-passed"] == str(len(acme))
    page.select_option("#group-by", "type")
    groups = page.locator("#model-table tr.group-row")
    assert groups.count() == len({r.model.model_type for r in acme})
    assert groups.first.inner_text().startswith(sorted(r.model.model_type for r in acme)[0])
    page.screenshot(path=str(ARTIFACTS / "index-many-grouped.png"), full_page=True)
    assert visit.errors == [] and visit.requests == [visit.url]


def test_a_chart_point_names_its_model(browser: Any, many_site: Path, many: Any) -> None:
    visit = Visit(browser, many_site / "index.html")
    page = visit.page
    charts = page.locator("#chart .figure.chart svg")
    assert charts.count() == 2  # size against trainables, and the share of the model trained
    points = charts.first.locator("circle.point-hit")
    assert points.count() == 2 * len(many.reports)  # one per model and rank
    largest = max(many.reports, key=lambda report: (report.model.total_params, report.model.id))
    for index in range(points.count()):
        title = points.nth(index).locator("title").text_content() or ""
        if title.startswith(largest.model.id + "\n"):
            break
    else:
        raise AssertionError("no point names the largest model")
    point = points.nth(index)
    point.scroll_into_view_if_needed()
    point.hover()
    box = point.bounding_box()
    assert box is not None
    hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y).closest('circle.point-hit') !== null",
                        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2])
    assert hit  # the tooltip's target is on top: hovering the point shows it
    labels = charts.first.locator("text").all_text_contents()
    assert "llama-width-1-step500" in labels  # the highlighted model is labelled
    charts.first.screenshot(path=str(ARTIFACTS / "cross-model-many.png"))
    charts.nth(1).screenshot(path=str(ARTIFACTS / "cross-model-percent-many.png"))
    assert visit.errors == []


@pytest.mark.parametrize("width", [1024, 1400])
def test_no_table_cell_is_cut_off(browser: Any, many_site: Path, site: Path, width: int) -> None:
    for path in (many_site / "index.html", site / GOLD_SLUG / "report.html", site / "index.html"):
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(path.resolve().as_uri(), wait_until="load")
        assert page.evaluate(CUT_OFF_CELLS) == [], (path, width)
        if path.parent == many_site:
            page.screenshot(path=str(ARTIFACTS / f"index-many-{width}.png"))
        page.close()


def test_without_scripts_every_row_shows(browser: Any, many_site: Path, many: Any) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto((many_site / "index.html").resolve().as_uri(), wait_until="load")
    rows = page.locator("#model-table tbody tr.entry")
    assert rows.count() == len(many.reports) + len(many.failures)
    assert all(rows.nth(index).is_visible() for index in (0, rows.count() // 2, rows.count() - 1))
    assert page.evaluate(ROW_ORDER) == [r.model.id.lower() for r in many.reports] + [
        f.id.lower() for f in many.failures]
    assert not page.locator("#controls").is_visible()  # no dead controls
    assert page.locator("#model-table thead button").count() == 0  # headings are plain text, not dead buttons
    assert _counts(page) == {"reported": str(len(many.reports)), "failed": str(len(many.failures)),
                             "mismatch": str(sum(1 for r in many.reports if r.mismatches)),
                             "merge-passed": str(sum(1 for r in many.reports if r.merge_check.status == "passed"))}
    context.close()


def test_the_page_policy_blocks_every_outside_request(browser: Any, many_site: Path) -> None:
    visit = Visit(browser, many_site / "index.html")
    blocked = visit.page.evaluate("""async () => {
      const violations = [];
      document.addEventListener("securitypolicyviolation", event => violations.push(event.violatedDirective));
      const image = document.createElement("img");
      image.src = "http://127.0.0.1:9/pixel.png";
      document.body.appendChild(image);
      const outcome = await fetch("http://127.0.0.1:9/data.json").then(() => "fetched", () => "refused");
      const script = document.createElement("script");
      script.textContent = "window.injected = true";
      document.body.appendChild(script);
      await new Promise(resolve => setTimeout(resolve, 200));
      return {violations: violations.sort(), outcome: outcome, injected: window.injected === true};
    }""")
    assert blocked["outcome"] == "refused" and not blocked["injected"]
    assert {"connect-src", "img-src", "script-src-elem"} <= set(blocked["violations"]), blocked
    # Chromium reports the image's request, then refuses it for the policy: nothing left the page.
    assert visit.requests[0] == visit.url
    assert visit.refused == {url: "csp" for url in visit.requests[1:]}  # Playwright's word for ERR_BLOCKED_BY_CSP


def test_a_vision_tower_shows_its_module_groups_by_part_collapsed(
        browser: Any, tmp_path: Path, many: Any) -> None:
    from reportgen.render.site import write_model

    report = next(report for report in many.reports if report.model.model_type == "gemma3")
    write_model(report, tmp_path)
    visit = Visit(browser, tmp_path / report.slug / "report.html")
    page = visit.page
    parts = page.locator("#modules details.part")
    assert parts.count() == 2
    language, vision = parts.nth(0), parts.nth(1)
    assert language.locator("summary").inner_text().startswith("Language model")
    assert vision.locator("summary").inner_text().startswith("Vision tower")
    vision_rows = [row for row in report.modules if row.part == "vision tower"]
    assert f"{len(vision_rows)} module groups" in vision.locator("summary").inner_text()
    assert language.get_attribute("open") is not None and language.locator("table").is_visible()
    assert vision.get_attribute("open") is None and not vision.locator("table").is_visible()  # collapsed
    vision.locator("summary").click()
    assert vision.locator("tbody tr").count() == len(vision_rows) and vision.locator("table").is_visible()
    assert page.evaluate(CUT_OFF_CELLS) == []
    # The section menu stays at hand far down the page.
    page.click('nav.toc a[href="#architecture"]')
    menu = page.locator("nav.toc").bounding_box()
    assert menu is not None and 0 <= menu["y"] < 5 and page.evaluate("window.scrollY") > 1000
    page.click('nav.toc a[href="#modules"]')
    page.screenshot(path=str(ARTIFACTS / "vision-parts.png"))
    assert visit.errors == [] and visit.requests == [visit.url]
