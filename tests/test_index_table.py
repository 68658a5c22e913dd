"""The index at hundreds of models: short names, groups, chart labels, bounded summaries, stable bytes."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import markdown
import pytest

from reportgen.data import MISMATCH, ModelFailure, ModelReport, RunResult
from reportgen.render import scatter
from reportgen.render.index_table import index_table, organisation, short_names
from reportgen.render.markdown import index_markdown, summary_markdown
from reportgen.render.site import write_index
from reportgen.render.view import index_view
from tests.many_models import many_models
from tests.update_gold import gold_result

GITHUB_COMMENT_LIMIT = 65_536  # characters GitHub accepts in one pull-request comment


def test_long_paths_keep_only_the_folders_that_tell_models_apart() -> None:
    paths = ["/home/me/zoo/cfg/deepseek_v3.json", "/home/me/zoo/cfg/llama.json",
             "/data/ckpt/run-a/step-100/config.json", "/data/ckpt/run-b/step-100/config.json",
             "/data/ckpt/run-b/step-200/config.json", "only.json"]
    assert short_names(paths) == {
        "/home/me/zoo/cfg/deepseek_v3.json": "…/deepseek_v3.json",
        "/home/me/zoo/cfg/llama.json": "…/llama.json",
        "/data/ckpt/run-a/step-100/config.json": "…/run-a/step-100/config.json",  # step-100 alone is shared
        "/data/ckpt/run-b/step-100/config.json": "…/run-b/step-100/config.json",
        "/data/ckpt/run-b/step-200/config.json": "…/step-200/config.json",  # a config.json keeps its folder
        "only.json": "only.json",  # nothing to cut
    }


def test_organisation_is_the_hub_owner_or_local() -> None:
    assert organisation("meta-llama/Llama-3.2-1B-Instruct", local=False) == "meta-llama"
    assert organisation("./configs/tiny.json", local=True) == "local"


def test_the_table_sorts_filters_and_counts_by_the_reports_own_values() -> None:
    result = many_models()
    table = index_table(index_view(result))
    assert len(table.entries) == len(result.reports) + len(result.failures) == 180
    mismatched = [report for report in result.reports if any(c.status == MISMATCH for c in report.cells)]
    assert table.counts.cards == (("reported", "Reported", 168), ("failed", "Failed", 12),
                                  ("mismatch", "Mismatches", len(mismatched)),
                                  ("merge-passed", "Merge checks passed",
                                   sum(1 for report in result.reports if report.merge_check.status == "passed")))
    first = table.entries[0]
    keys = dict(first.sort_keys(table.ranks))
    report = result.reports[0]
    assert keys["params"] == str(report.model.total_params)
    assert keys["r8"] == str(report.cell("all_linear", 8).formula_trainable)
    assert dict(table.entries[-1].sort_keys(table.ranks)).get("params") is None  # a failure sorts last
    hub_owners = {report.model.id.split("/")[0] for report in result.reports if not report.model.id.startswith("/")}
    assert {entry.organisation for entry in table.entries} == hub_owners | {"local"}
    assert hub_owners == {"acme", "globex", "initech"}


def test_a_label_is_the_models_name_whole_where_two_owners_share_it() -> None:
    report = gold_result().reports[0]
    reports = tuple(dataclasses.replace(report, model=dataclasses.replace(report.model, id=model_id, source=source))
                    for model_id, source in (("org-a/tiny", "bundled"), ("org-b/tiny", "bundled"),
                                             ("org-a/other", "bundled"), ("/runs/a/config.json", "local file")))
    assert scatter.chart_names(reports) == {"org-a/tiny": "org-a/tiny", "org-b/tiny": "org-b/tiny",
                                            "org-a/other": "other", "/runs/a/config.json": "a"}


def test_labels_are_the_largest_the_outliers_and_the_highlighted() -> None:
    # A clean power law y = x / 100 and two strays; the largest model sits on the trend.
    xs = tuple(float(10 ** (3 + index / 4)) for index in range(20))
    ys = [x / 100 for x in xs]
    ys[5] *= 30  # far above the trend
    ys[12] /= 40  # far below it
    ids = tuple(f"org/model-{index}" for index in range(20))
    labels = scatter.select_labels(xs, tuple(ys), ids, highlight=("org/model-3",))
    assert labels == ("org/model-3", "org/model-19", "org/model-12", "org/model-5")


def test_labels_never_overlap_even_when_every_point_is_crowded() -> None:
    result = many_models()
    every = tuple(report.model.id for report in result.reports)  # ask for every model: most must be left out
    plotted = scatter.cross_model_chart(result, highlight=every)
    placed = scatter.layout(plotted).labels
    assert 3 <= len(placed) < len(every)
    for (_, one), (_, other) in itertools.combinations(placed, 2):
        assert not one.overlaps(other)


def test_every_point_carries_its_model_in_a_tooltip() -> None:
    result = many_models()
    chart = scatter.draw_points(scatter.cross_model_chart(result))
    titles = re.findall(r'<circle class="point-hit"[^>]*><title>([^<]*)</title>', chart.svg)
    assert len(titles) == 2 * len(result.reports)  # one point per model and rank (every cell applies here)
    first_lines = {title.split("\n")[0].replace("&amp;", "&") for title in titles}
    assert first_lines == {report.model.id for report in result.reports}


def test_index_md_has_one_row_per_model_and_at_most_eight_columns() -> None:
    result = dataclasses.replace(many_models(), ranks=(4, 8, 16, 64))  # more ranks, no more columns
    html = markdown.markdown(index_markdown(result), extensions=["tables"])
    table = html.split("<table>")[1]
    assert len(re.findall(r"<th[ >]", table)) == 8
    assert table.count("<tr>") == 1 + len(result.reports) + len(result.failures)


def _failure(index: int) -> ModelFailure:
    path = f"/very/long/path/to/a/team/checkpoint/folder/number-{index:04d}/config.json"
    return ModelFailure(id=path, slug=f"f{index}", line=index + 1,
                        error=f"models.txt:{index + 1}: {path}: " + "the config cannot be built because " * 20)


def test_summary_of_a_thousand_failures_fits_a_comment() -> None:
    result = RunResult(reports=(), failures=tuple(_failure(index) for index in range(1000)), ranks=(8, 16),
                       environment=gold_result().environment)
    text = summary_markdown(result)
    assert len(text) < GITHUB_COMMENT_LIMIT
    assert "1000 failed" in text and "990 more failures" in text
    assert "number-0000" in text and "number-0999" not in text  # the first lines of the models file first


def _mismatched(report: ModelReport, index: int) -> ModelReport:
    wrong = 1 + index % 3  # 1, 2 or 3 disagreeing cells
    cells = tuple(dataclasses.replace(cell, status=MISMATCH, peft_trainable=(cell.formula_trainable or 0) + 1)
                  if number < wrong and cell.applicable else cell for number, cell in enumerate(report.cells))
    model = dataclasses.replace(report.model, id=f"org-{index % 7}/model-number-{index:04d}-" + "x" * 60)
    return dataclasses.replace(report, model=model, slug=f"m{index}", cells=cells)


def test_summary_of_a_thousand_mismatches_fits_a_comment() -> None:
    report = gold_result().reports[0]
    result = RunResult(reports=tuple(_mismatched(report, index) for index in range(1000)), failures=(),
                       ranks=(8, 16), environment=report.environment)
    text = summary_markdown(result)
    assert len(text) < GITHUB_COMMENT_LIMIT
    banner = next(line for line in text.splitlines() if line.startswith("**⚠"))
    assert "1000 models" in banner and "and 990 more" in banner
    assert banner.count("(3 cells)") == 10  # the ones with the most disagreements come first
    assert "more models in [index.md](index.md)" in text


def test_indexes_are_byte_identical_across_runs(tmp_path: Path) -> None:
    result = many_models()
    first, second = tmp_path / "a", tmp_path / "b"
    write_index(result, first, highlight=("acme/llama-width-0-step2500",))
    write_index(result, second, highlight=("acme/llama-width-0-step2500",))
    names = sorted(path.name for path in first.iterdir())
    assert names == ["cross_model.svg", "cross_model_percent.svg", "index.html", "index.json", "index.md",
                     "summary.md"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_rows_carry_the_model_type_the_script_groups_by() -> None:
    result = many_models()
    table = index_table(index_view(result))
    types = {dict(entry.sort_keys(table.ranks))["type"] for entry in table.entries}
    assert types == {report.model.model_type for report in result.reports} | {"unknown"}  # failures: unknown
    assert "gemma3" in types


def test_a_long_failure_list_is_folded_under_its_count(tmp_path: Path) -> None:
    many = many_models()  # 12 of its 180 models fail: more than the 10 shown unfolded
    write_index(many, tmp_path / "many")
    section = (tmp_path / "many" / "index.html").read_text(encoding="utf-8").split('<section id="failures">')[1]
    assert f"<details><summary>{len(many.failures)} models failed: their errors</summary>" in section
    assert section.split("</section>")[0].count("<li>") == len(many.failures)
    few = dataclasses.replace(many, failures=many.failures[:3])
    write_index(few, tmp_path / "few")
    section = (tmp_path / "few" / "index.html").read_text(encoding="utf-8").split('<section id="failures">')[1]
    assert "<details>" not in section.split("</section>")[0]


def test_an_index_whose_models_have_no_all_linear_count_is_written_without_the_charts(tmp_path: Path) -> None:
    # Mamba-2: q/k/v/o match nothing and PEFT refuses all-linear (out_proj); only its single-module in_proj
    # counts, which the charts do not plot, so the log-log charts had no point, matplotlib's log axis raised
    # "Data cannot be log-scaled" and the whole run crashed after writing every model.
    result = gold_result()
    refused = [dataclasses.replace(report, cells=tuple(
        dataclasses.replace(cell, formula_trainable=None, peft_trainable=None, status="not_applicable")
        for cell in report.cells)) for report in result.reports]
    written = write_index(dataclasses.replace(result, reports=tuple(refused)), tmp_path)
    assert "index.html" in written and not any(name.endswith(".svg") for name in written)
    assert '<section id="chart">' not in (tmp_path / "index.html").read_text(encoding="utf-8")


def test_a_chart_that_cannot_be_drawn_is_a_note_in_the_index_and_the_rest_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = scatter.draw_points

    def fails_on_the_percent_chart(points: scatter.PointChart) -> object:
        if points.chart.filename == "cross_model_percent.svg":
            raise ValueError("Data cannot be log-scaled because all values are <= 0.")
        return drawn(points)

    monkeypatch.setattr(scatter, "draw_points", fails_on_the_percent_chart)
    written = write_index(gold_result(), tmp_path)
    assert "cross_model.svg" in written and "cross_model_percent.svg" not in written
    html = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert ("the chart cross_model_percent.svg could not be drawn: ValueError: Data cannot be log-scaled because "
            "all values are &lt;= 0.") in html
