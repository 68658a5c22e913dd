"""The rendered site: golden files, the walk-through's numbers on the page, determinism, escaping, chart data."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable
from html import escape as html_escape
import json
import re
from importlib import resources
from pathlib import Path

import markdown
import pytest

from reportgen import data
from reportgen.data import MergeCheck, ModelReport, Printouts, RunResult
from reportgen.pipeline import Study, run
from tests.families import points
from reportgen.render import charts, scatter
from reportgen.render.html import report_html
from reportgen.render.markdown import code, md_escape, report_markdown, summary_markdown
from reportgen.render.site import write_site
from reportgen.resolve import ModelSpec
from tests.test_published_totals import PUBLISHED_TOTALS
from tests.update_gold import GOLD, GOLD_FILES, GOLD_MODEL, GOLD_SLUG, gold_result, render_gold

# The walk-through's published figures for meta-llama/Llama-3.2-1B-Instruct, and hand calculations.
HIDDEN, KV, INTERMEDIATE, LAYERS = 2048, 512, 8192, 16
Q_PARAMS = HIDDEN * HIDDEN * LAYERS  # 67,108,864
KV_PARAMS = KV * HIDDEN * LAYERS  # 16,777,216
MLP_PARAMS = INTERMEDIATE * HIDDEN * LAYERS  # 268,435,456
Q_R8 = 8 * (HIDDEN + HIDDEN) * LAYERS  # 524,288
QKVO_R16 = 16 * ((HIDDEN + HIDDEN) * 2 + (HIDDEN + KV) * 2) * LAYERS  # 3,407,872
ALL_LINEAR_R8 = 8 * ((HIDDEN + HIDDEN) * 2 + (HIDDEN + KV) * 2 + (HIDDEN + INTERMEDIATE) * 3) * LAYERS  # 5,636,096
TOTAL_PARAMS = PUBLISHED_TOTALS[GOLD_MODEL]  # 1,235,814,400
PEFT_LINE = "trainable params: 3,407,872 || all params: 1,239,222,272 || trainable%: 0.2750"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render_gold(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def report() -> ModelReport:
    return gold_result().reports[0]


@pytest.mark.parametrize("name", sorted(GOLD_FILES))
def test_matches_golden_file(site: dict[str, str], name: str) -> None:
    expected = (GOLD / name).read_text(encoding="utf-8")
    assert site[name] == expected, f"{name} differs from tests/gold/{name}; if intended: make update-gold"


@pytest.mark.parametrize("name", ["report.html", "report.md"])
def test_page_shows_the_walk_through_numbers(site: dict[str, str], name: str) -> None:
    page = site[name]
    assert PEFT_LINE in page
    assert f"{TOTAL_PARAMS:,}" in page
    for count in (Q_PARAMS, KV_PARAMS, MLP_PARAMS, Q_R8, QKVO_R16, ALL_LINEAR_R8):
        assert f"{count:,}" in page, count
    # Percent of targeted, as the walk-through prints them: q 0.78 / 1.56, qkvo 1.02 / 2.03, all 0.58 / 1.16.
    for share in ("0.78%", "1.56%", "1.02%", "2.03%", "0.58%", "1.16%"):
        assert share in page, share
    # The formula filled in with the largest module (gate_proj, 8192 x 2048) at r=8.
    assert f"{8 * (INTERMEDIATE + HIDDEN):,}" in page
    assert "LlamaForCausalLM" in page and "meta-llama/Llama-3.2-1B-Instruct" in page


def test_markdown_tables_are_real_tables(site: dict[str, str]) -> None:
    html = markdown.markdown(site["report.md"], extensions=["tables"])
    # headline, model card, count explanation, modules, scenarios, per module, memory headline, memory totals,
    # assumptions (one method: no side-by-side methods table)
    assert html.count("<table>") == 9
    left, right = '<td style="text-align: left;">', '<td style="text-align: right;">'
    assert f"{left}<code>q_proj</code></td>\n{right}16</td>\n{right}{Q_R8:,} ✓ PEFT</td>" in html
    assert '<img alt="' in html and 'src="params_by_module.svg"' in html
    assert 'src="lora_diagram.svg"' in html


def test_markdown_row_marks_each_count_confirmed(site: dict[str, str]) -> None:
    row = next(line for line in site["report.md"].splitlines() if line.startswith("| **qkvo**"))
    assert f"{QKVO_R16:,} ✓ PEFT" in row and "| 64 |" in row and "| 167.77M |" in row


def test_html_is_self_contained(site: dict[str, str]) -> None:
    for name in ("report.html", "index.html"):
        page = site[name]
        assert "<style>" in page and "<svg" in page
        links = re.findall(r'(?:href|src)="([^"]*)"', page)
        assert links and all("//" not in link and ":" not in link for link in links), links
        assert "<link" not in page and "<img" not in page
        assert all(target.startswith("#") for target in re.findall(r"url\(([^)]*)\)", page))
    assert "<script" not in site["report.html"]
    assert_only_own_script(site["index.html"])
    assert site["report.html"].count('<div class="figure chart"') == 4
    assert '<a href="meta-llama--Llama-3.2-1B-Instruct/report.html">' in site["index.html"]


def assert_only_own_script(page: str) -> None:
    """The page's one script is templates/index.js, inline, and the CSP allows exactly it by its sha256."""
    scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    own = (Path(__file__).parent.parent / "templates" / "index.js").read_text(encoding="utf-8")
    assert scripts == [own] and page.count("<script") == 1
    digest = base64.b64encode(hashlib.sha256(own.encode("utf-8")).digest()).decode("ascii")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None
    assert csp.group(1) == ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                            f"script-src 'sha256-{digest}'")


def test_index_lists_the_failure_with_its_error(site: dict[str, str]) -> None:
    error = gold_result().failures[0].error  # the pipeline's own words, shown whole
    assert error.startswith("models.txt:2: ./no-such-model/config.json")
    assert html_escape(error, quote=False) in site["index.html"]
    assert "./no-such-model/config.json" in site["index.md"] and "failed" in site["index.md"]
    assert "failed" in site["summary.md"]
    assert f"[meta-llama/Llama-3.2-1B-Instruct]({GOLD_SLUG}/report.md)" in site["index.md"]


def test_site_writes_every_file(tmp_path: Path) -> None:
    written = {path.relative_to(tmp_path).as_posix() for path in write_site(gold_result(), tmp_path)}
    per_model = {"report.json", "report.html", "report.md", "lora_diagram.svg", "params_by_module.svg",
                 "trainables_by_rank.svg", "trainable_percent.svg", "memory.svg"}
    assert written == {f"{GOLD_SLUG}/{name}" for name in per_model} | {
        "index.json", "index.md", "index.html", "summary.md", "cross_model.svg", "cross_model_percent.svg"}
    assert json.loads((tmp_path / "index.json").read_text())["failures"][0]["status"] == "failed"


def test_two_runs_write_identical_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_site(gold_result(), first)
    write_site(gold_result(), second)
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert len(files) == 14
    for relative in files:
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    svg = (first / GOLD_SLUG / "params_by_module.svg").read_text()
    assert "<dc:date>" not in svg


# --- statuses the gold run does not show -------------------------------------------------------


def _with_cell(report: ModelReport, scenario: str, rank: int, **changes: object) -> ModelReport:
    cells = tuple(
        dataclasses.replace(cell, **changes) if (cell.scenario, cell.rank) == (scenario, rank) else cell
        for cell in report.cells
    )
    return dataclasses.replace(report, cells=cells)


def test_a_disagreement_is_shown_not_hidden(report: ModelReport) -> None:
    note = "PEFT trains 3,407,880 parameters, the closed form r*(m+n) gives 3,407,872 (difference +8)"
    broken = _with_cell(report, "qkvo", 16, peft_trainable=3_407_880, status=data.MISMATCH, note=note)
    html, text = report_html(broken), report_markdown(broken)
    assert "&#10007; PEFT 3,407,880" in html and note in html
    assert "✗ PEFT 3,407,880" in text and "difference +8" in text


def test_a_scenario_that_does_not_apply_shows_its_note(report: ModelReport) -> None:
    note = "not applicable: fused (c_attn holds q, k and v in one matrix, so q, v cannot be adapted alone)"
    for rank in report.ranks:
        report = _with_cell(report, "qv_only", rank, status=data.NOT_APPLICABLE, note=note, formula_trainable=None,
                            peft_trainable=None, matrices=0, targeted_params=0, percent_of_targeted=None)
    assert note in report_html(report)
    assert "n/a: " + md_escape(note) in report_markdown(report)


def test_merge_check_is_rendered_whatever_its_status(report: ModelReport) -> None:
    assert "not run" in report_html(dataclasses.replace(report, merge_check=MergeCheck(status="not_run")))
    passed = MergeCheck(status="passed", passed=True, max_abs_diff=3.1e-06, tolerance=1e-4,
                        materialised="replica with 2 of 16 layers", device="cpu", dtype="float32",
                        params_after_merge=1_235_814_400)
    merged = dataclasses.replace(report, merge_check=passed,
                                 printouts=Printouts(base="B", peft="P", merged="LlamaForCausalLM(merged)"))
    for page in (report_html(merged), report_markdown(merged)):
        assert "passed" in page and "3.1e-06" in page and "replica with 2 of 16 layers" in page
        assert "1,235,814,400" in page and "LlamaForCausalLM(merged)" in page
    failed = dataclasses.replace(report, merge_check=MergeCheck(status="failed", passed=False, max_abs_diff=0.5))
    assert "FAILED" in report_html(failed)


def test_summary_fits_a_pull_request_comment(report: ModelReport) -> None:
    many = RunResult(reports=(report,) * 2000, failures=(), ranks=(8, 16), environment=report.environment)
    text = summary_markdown(many)
    assert len(text) < 60_000
    assert "more models in [index.md](index.md)" in text


# --- escaping --------------------------------------------------------------------------------


def test_a_hostile_folder_name_shows_as_text(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    config = json.loads(
        (resources.files("reportgen") / "catalog" / "meta-llama--Llama-3.2-1B-Instruct.json").read_text()
    )
    # A folder "<script>alert(1)<" holding "script>".
    folder = write_config("<script>alert(1)</script>", config=config, num_hidden_layers=2, vocab_size=512)
    result = run([ModelSpec(text=str(folder), origin="models.txt:1")], Study(ranks=(8,), merge_check=False))
    assert result.ok
    out = tmp_path / "site"
    write_site(result, out)
    slug = result.reports[0].slug
    for page in (out / slug / "report.html", out / "index.html"):
        text = page.read_text()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, page
    assert "<script" not in (out / slug / "report.html").read_text()
    assert_only_own_script((out / "index.html").read_text())
    for page in (out / slug / "report.md", out / "index.md", out / "summary.md"):
        rendered = markdown.markdown(page.read_text(), extensions=["tables"])
        assert "<script" not in rendered and "&lt;script&gt;alert(1)" in rendered, page


def test_markdown_helpers_escape() -> None:
    assert md_escape("a|b <x> *y*") == "a\\|b \\<x\\> \\*y\\*"
    assert str(code("a`b|c")) == "``a`b\\|c``"


# --- what the charts plot ----------------------------------------------------------------------

# Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008), as published.
OKABE_ITO = {"black": "#000000", "orange": "#e69f00", "sky blue": "#56b4e9", "bluish green": "#009e73",
             "yellow": "#f0e442", "blue": "#0072b2", "vermillion": "#d55e00", "reddish purple": "#cc79a7"}


def drawn_fills(svg: str) -> list[str]:
    """The colour of every filled shape drawn in the plot area, in drawing order; a hatched one by its pattern's."""
    patterns = dict(re.findall(r'<pattern id="([^"]+)".*?<rect [^>]*fill="(#[0-9a-f]{6})"', svg, re.S))
    fills = re.findall(r'<path d="[^"]*" clip-path="url\(#[^)]+\)" style="fill: (#[0-9a-f]{6}|url\(#[^)]+\))', svg)
    return [patterns[fill[5:-1]] if fill.startswith("url") else fill for fill in fills]


def drawn_line_colours(svg: str) -> list[str]:
    """The colour of every line drawn in the plot area (grid lines left out), in drawing order."""
    strokes = re.findall(r'clip-path="url\(#[^)]+\)" style="fill: none;[^"]*? stroke: (#[0-9a-f]{6})', svg)
    return [stroke for stroke in strokes if stroke != "#dddddd"]



def test_module_chart_plots_each_module_by_group(report: ModelReport) -> None:
    chart = charts.module_params_chart(report)
    assert points(chart)["parameters"] == {
        "q_proj": Q_PARAMS, "k_proj": KV_PARAMS, "v_proj": KV_PARAMS, "o_proj": Q_PARAMS,
        "gate_proj": MLP_PARAMS, "up_proj": MLP_PARAMS, "down_proj": MLP_PARAMS,
    }
    assert chart.groups == ("attention",) * 4 + ("mlp",) * 3
    # Drawn: the four attention bars in one colour, the three MLP bars in another (hatched), both Okabe & Ito's.
    fills = drawn_fills(charts.draw(chart).svg)[:7]
    assert fills == [OKABE_ITO["blue"]] * 4 + [OKABE_ITO["orange"]] * 3


def test_rank_chart_plots_each_scenario_on_a_log_scale(report: ModelReport) -> None:
    chart = charts.trainables_by_rank_chart(report)
    assert chart.x_values == (8.0, 16.0)
    plotted = points(chart)
    assert plotted["qkvo"] == {"8": QKVO_R16 / 2, "16": QKVO_R16}
    assert plotted["all_linear"]["8"] == ALL_LINEAR_R8
    assert set(plotted) == {"qv_only", "qkvo", "all_linear"}


def test_percent_chart_plots_share_of_the_model(report: ModelReport) -> None:
    chart = charts.trainable_percent_chart(report)
    plotted = points(chart)
    assert plotted["r=16"]["qkvo"] == pytest.approx(100 * QKVO_R16 / TOTAL_PARAMS)
    assert plotted["r=8"]["q_proj"] == pytest.approx(100 * Q_R8 / TOTAL_PARAMS)
    assert chart.categories[:3] == ("qv_only", "qkvo", "all_linear") and len(chart.categories) == 10


def test_cross_model_chart_plots_size_against_trainables() -> None:
    plotted = scatter.cross_model_chart(gold_result())
    chart = plotted.chart
    assert chart.x_values == (TOTAL_PARAMS,)
    assert plotted.ids == (GOLD_MODEL,)
    assert points(chart) == {  # labelled by the model's name, its organisation left to the tooltip
        "r=8": {"Llama-3.2-1B-Instruct": ALL_LINEAR_R8},
        "r=16": {"Llama-3.2-1B-Instruct": 2 * ALL_LINEAR_R8},
    }
    assert plotted.tooltips[0].splitlines()[0] == GOLD_MODEL
    assert "r=8: 5.64M trainable" in plotted.tooltips[0]


def test_percent_chart_plots_the_share_of_the_model_trained() -> None:
    chart = scatter.percent_chart(gold_result()).chart
    assert points(chart) == {
        "r=8": {"Llama-3.2-1B-Instruct": pytest.approx(100 * ALL_LINEAR_R8 / TOTAL_PARAMS)},
        "r=16": {"Llama-3.2-1B-Instruct": pytest.approx(200 * ALL_LINEAR_R8 / TOTAL_PARAMS)},
    }


def test_lines_are_drawn_in_okabe_itos_colours(report: ModelReport) -> None:
    # One line (and its markers) per scenario, each its own colour-blind-safe colour.
    svg = charts.draw(charts.trainables_by_rank_chart(report)).svg
    assert drawn_line_colours(svg) == [OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish green"]]
