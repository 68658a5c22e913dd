"""The fine-tuning memory section, chart, index column and build note, against hand calculations.

The gold run is meta-llama/Llama-3.2-1B-Instruct (1,235,814,400 parameters, 16 layers, hidden 2048,
32 heads of 64, 8 kv heads, intermediate 8192, vocabulary 128256) at ranks 8 and 16, default assumptions
(bf16, AdamW, sequence 2048, batch 1, gradient checkpointing on, SDPA, fp32 adapters). Every expected figure
below is worked out here from those published dimensions and the stated formulas.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING

import markdown
import pytest

from reportgen.data import ModelReport, RunResult
from tests.families import points
from reportgen.render import charts, terminal
from reportgen.render.html import index_html, report_html
from reportgen.render.markdown import report_markdown, summary_markdown
from reportgen.render.view import report_view
from tests.test_published_totals import PUBLISHED_TOTALS
from tests.test_render import OKABE_ITO, drawn_fills
from tests.update_gold import GOLD_MODEL, gold_result

if TYPE_CHECKING:
    from tests.conftest import Cli

PARAMS = PUBLISHED_TOTALS[GOLD_MODEL]  # 1,235,814,400
LAYERS, HIDDEN, HEADS, KV_WIDTH, INTER, VOCAB = 16, 2048, 32, 512, 8192, 128_256
SEQ = 2048
GIB = 2**30
# Linear weights of the blocks: per layer q and o 2048x2048, k and v 512x2048, gate/up/down 8192x2048.
LINEAR = LAYERS * (2 * HIDDEN * HIDDEN + 2 * KV_WIDTH * HIDDEN + 3 * INTER * HIDDEN)
ALL_LINEAR_R16 = 16 * LAYERS * (2 * (HIDDEN + HIDDEN) + 2 * (HIDDEN + KV_WIDTH) + 3 * (HIDDEN + INTER))

BF16_WEIGHTS = PARAMS * 2  # 2,471,628,800 bytes: the frozen base of LoRA, the trained weights of full
# QLoRA: linear weights in 4 bits, one 8-bit absmax per 64 weights plus one fp32 constant per 256 absmax
# (every matrix here divides evenly); embeddings, norms (and the tied head) stay bf16.
NF4_CONSTANTS = LINEAR // 64 + LINEAR // 64 // 256 * 4
NF4_FROZEN = (PARAMS - LINEAR) * 2 + LINEAR // 2 + NF4_CONSTANTS
# Activations with checkpointing (tests/test_memory_measure.py measures the same terms on CPU): every layer's
# bf16 input, the rotary cos and sin once, one layer recomputed, the final norm and the loss's fp32 log-probabilities,
# and the loss's two fp32 buffers in its backward.
LAYER_INPUTS = LAYERS * SEQ * HIDDEN * 2
ROTARY = 2 * SEQ * 64 * 2
SDPA = SEQ * (2 * (2 * HIDDEN + 2 * KV_WIDTH) + 4 * HEADS)  # q, k, v, output (bf16); fp32 logsumexp per head
GATED = SEQ * 2 * 3 * INTER  # gate's output, act(gate), up's output
NORM = SEQ * (4 * HIDDEN + 4)  # RMSNorm's fp32 input and 1/rms
LOSS = SEQ * VOCAB * 4 + 8 * SEQ * VOCAB  # kept log-probabilities; backward's two fp32 gradients
# Full fine-tuning: norms also keep x_normed, each Linear its bf16 input once (o_proj's is SDPA's output),
# the tied head its input.
FULL_LAYER = 2 * NORM + 2 * SEQ * 2 * HIDDEN + SDPA + GATED + SEQ * 2 * (2 * HIDDEN + INTER)
FULL_ACTIVATIONS = LAYER_INPUTS + ROTARY + FULL_LAYER + NORM + SEQ * 2 * 2 * HIDDEN + LOSS


def lora_activations(rank: int) -> int:
    """PEFT casts each adapted module's input to fp32: q, k, v, o, gate, up (2048 wide), down (8192); x A fp32."""
    layer = 2 * NORM + SDPA + GATED + SEQ * 4 * (6 * HIDDEN + INTER) + SEQ * 7 * 4 * rank
    return LAYER_INPUTS + ROTARY + layer + NORM + LOSS


LORA_ACTIVATIONS = lora_activations(16)

FULL = {"frozen weights": 0, "trainable weights": BF16_WEIGHTS, "gradients": BF16_WEIGHTS,
        "optimizer state": PARAMS * 12, "activations": FULL_ACTIVATIONS}  # fp32 m, v, master copy
ADAPTERS = {"trainable weights": ALL_LINEAR_R16 * 4, "gradients": ALL_LINEAR_R16 * 4,
            "optimizer state": ALL_LINEAR_R16 * 8, "activations": LORA_ACTIVATIONS}
LORA = {"frozen weights": BF16_WEIGHTS, **ADAPTERS}
# QLoRA keeps what LoRA keeps: bitsandbytes (0.43.2 and later) keeps no 4-bit Linear's input (measured on CPU).
QLORA = {"frozen weights": NF4_FROZEN, **ADAPTERS}
GB = [f"{sum(row.values()) / 1e9:.2f} GB" for row in (FULL, LORA, QLORA)]  # the three totals as the pages print them
BARS = ("Full fine-tuning\nall parameters", "LoRA\nall_linear, r=16", "QLoRA\nall_linear, r=16")
ASSUMPTIONS = ("seq_len", "batch_size", "base_dtype", "qlora_weights", "qlora_inputs", "qlora_prepare",
               "adapter_dtype", "lora_dropout", "full_precision", "optimizer", "attention", "grad_checkpointing",
               "activations", "loss_buffers", "gpu_fit")


@pytest.fixture(scope="module")
def report() -> ModelReport:
    return gold_result().reports[0]


@pytest.fixture(scope="module")
def pages(report: ModelReport) -> dict[str, str]:
    drawn = charts.report_charts(report)
    return {"html": report_html(report, drawn), "md": report_markdown(report, drawn)}


def test_memory_chart_plots_each_component_of_each_method(report: ModelReport) -> None:
    chart = charts.memory_chart(report)
    assert chart.filename == "memory.svg" and chart.categories == BARS
    plotted = points(chart)
    for bar, expected in zip(BARS, (FULL, LORA, QLORA)):
        assert {component: plotted[component][bar] for component in expected} == expected, bar
    assert chart.references == ((24 * GIB, "24 GiB GPU"), (40 * GIB, "40 GiB GPU"), (80 * GIB, "80 GiB GPU"))
    # Drawn: each component in one colour on all three bars, five different colours, all from Okabe & Ito's
    # colour-blind-safe palette.
    svg = charts.draw(chart).svg
    fills = drawn_fills(svg)
    colours = [fills[start:start + len(BARS)] for start in range(0, len(fills), len(BARS))]
    assert len(colours) == len(FULL) and all(len(set(bars)) == 1 for bars in colours), colours
    assert len({bars[0] for bars in colours}) == len(FULL)
    assert {bars[0] for bars in colours} <= set(OKABE_ITO.values())
    # Every component tells apart in greyscale too: the first solid, the other four each with its own hatch
    # pattern in the drawn SVG.
    assert len(set(re.findall(r'<pattern id="(h[0-9a-f]+)"', svg))) == 4


def test_memory_chart_is_drawn_with_its_reference_lines(report: ModelReport) -> None:
    svg = charts.draw(charts.memory_chart(report)).svg
    for text in ("24 GiB GPU", "40 GiB GPU", "80 GiB GPU", *GB, "optimizer state"):
        assert text in svg, text
    assert svg == charts.draw(charts.memory_chart(report)).svg


def test_close_reference_lines_share_one_label() -> None:
    lines = ((24.0, "24 GiB GPU"), (40.0, "40 GiB GPU"), (80.0, "80 GiB GPU"))
    assert charts.reference_labels(lines, top=100.0) == list(lines)
    assert charts.reference_labels(lines, top=5000.0) == [
        (24.0, ""), (40.0, ""), (80.0, "24 GiB / 40 GiB / 80 GiB GPU")]


@pytest.mark.parametrize("name", ["html", "md"])
def test_page_shows_the_headline_table(pages: dict[str, str], name: str) -> None:
    page = pages[name]
    section = page[page.index("Fine-tuning memory</h2>" if name == "html" else "## Fine-tuning memory"):]
    text = re.sub(r"<[^>]+>", " ", section) if name == "html" else section
    rows = {
        "Frozen weights": ("0 B", "2.47 GB", "1.03 GB"),  # 1,235,814,400 * 2 bytes; NF4 by hand
        "Trainable weights": ("2.47 GB", "45.09 MB", "45.09 MB"),  # 11,272,192 fp32 adapters
        "Optimizer state": ("14.83 GB", "90.18 MB", "90.18 MB"),  # 12 bytes and 8 bytes per parameter
        "Activations": tuple(f"{row['activations'] / 1e9:.2f} GB" for row in (FULL, LORA, QLORA)),
    }
    for label, values in rows.items():
        line = next(line for line in text.splitlines() if label in line)
        assert re.findall(r"\d[\d.,]* (?:GB|MB|B)\b", line)[:3] == list(values), (label, line)
    assert f"{PARAMS:,}" in section and f"{ALL_LINEAR_R16:,}" in section
    assert all(total in section for total in GB)
    assert "15.44 MB quantisation constants" in section
    for size in (24, 40, 80):
        assert f"Fits in {size} GiB" in section
    assert ("all_linear" if name == "html" else "all\\_linear") in section and "r=16" in section


@pytest.mark.parametrize("name", ["html", "md"])
def test_every_assumption_is_listed_with_its_source(pages: dict[str, str], name: str) -> None:
    page = pages[name]
    section = page[page.index("Fine-tuning memory"):]
    for assumption in ASSUMPTIONS:
        assert (f"<code>{assumption}</code>" if name == "html" else f"`{assumption}`") in section, assumption
    for source in ("Korthikanti et al. 2022", "Dettmers et al. 2023", "arXiv:2305.14314", "Rajbhandari et al. 2020",
                   "2048", "bf16", "adamw"):
        assert source in section, source


def test_markdown_memory_tables_are_real_tables(pages: dict[str, str]) -> None:
    html = markdown.markdown(pages["md"], extensions=["tables"])
    section = html[html.index("Fine-tuning memory"):html.index("PEFT's own count")]
    assert section.count("<table>") == 3
    right = '<td style="text-align: right;">'
    assert f"{right}2.47 GB</td>" in section and f"{right}<strong>{GB[1]}</strong></td>" in section
    assert 'src="memory.svg"' in section


def test_scenario_rank_totals(report: ModelReport) -> None:
    view = report_view(report).memory
    assert view.grid_titles == ("LoRA r=8", "QLoRA r=8", "LoRA r=16", "QLoRA r=16")
    (all_linear,) = [line for line in view.grid if line.scenario.name == "all_linear"]
    totals = [row.total_bytes if row else None for row in all_linear.rows]
    assert totals[2:] == [sum(LORA.values()), sum(QLORA.values())]
    # At r=8, adapters are half as big and LoRA's x A is half as wide.
    half = ALL_LINEAR_R16 // 2
    lora_r8 = BF16_WEIGHTS + half * 16 + lora_activations(8)
    assert totals[0] == lora_r8 and totals[1] == lora_r8 - BF16_WEIGHTS + NF4_FROZEN


def test_gpu_marks_follow_the_total(report: ModelReport) -> None:
    # The marks leave 1 GiB of headroom free: full fine-tuning at exactly 23 GiB fits 24 GiB; one byte more needs
    # the 40 GiB GPU.
    def with_full_total(total: int) -> ModelReport:
        rows = tuple(dataclasses.replace(row, total_bytes=total) if row.method == "full" else row
                     for row in report.memory)
        return dataclasses.replace(report, memory=rows)

    fits = report_view(with_full_total(23 * GIB)).memory.fits
    assert [(fit.gib, fit.fits) for fit in fits] == [(24, (True, True, True)), (40, (True,) * 3), (80, (True,) * 3)]
    over = with_full_total(23 * GIB + 1)
    assert report_view(over).memory.fits[0].fits == (False, True, True)
    row = next(line for line in report_html(over).splitlines() if "Fits in 24 GiB" in line)
    assert row.count("too big") == 1 and row.index("too big") < row.index("fits</span>")
    md_row = next(line for line in report_markdown(over).splitlines() if "Fits in 24 GiB" in line)
    assert md_row.endswith("| ✗ too big | ✓ fits | ✓ fits |")


def test_index_and_summary_quote_lora_and_qlora_totals(report: ModelReport) -> None:
    result = gold_result()
    html = index_html(result)
    assert f"LoRA {GB[1]}" in html and f"QLoRA {GB[2]}" in html and "all_linear, r=16" in html
    summary = summary_markdown(result)
    assert f"| {GB[1]} / {GB[2]} |" in summary and "Memory, LoRA / QLoRA (all\\_linear, r=16)" in summary


def test_a_report_without_memory_rows_has_no_memory_section(report: ModelReport) -> None:
    bare = dataclasses.replace(report, memory=(), memory_assumptions=())
    assert all(chart.filename != "memory.svg" for chart in charts.report_charts(bare))
    html, text = report_html(bare), report_markdown(bare)
    assert 'id="memory"' not in html and 'href="#memory"' not in html
    assert "Fine-tuning memory" not in text
    result = RunResult(reports=(bare,), failures=(), ranks=(8, 16), environment=bare.environment)
    assert "| - |" in summary_markdown(result)


def test_build_note_is_shown_when_there_is_one(report: ModelReport) -> None:
    assert report.model.build_note == ""
    assert "Built as" not in report_html(report) and "built:" not in terminal.render(report)
    note = "auto_map ignored: transformers' own class <LlamaForCausalLM> built"
    noted = dataclasses.replace(report, model=dataclasses.replace(report.model, build_note=note))
    assert "<dt>Built as</dt><dd>auto_map ignored: transformers&#39; own class &lt;LlamaForCausalLM&gt; built" \
        in report_html(noted)
    assert "| Built as | auto\\_map ignored: transformers' own class \\<LlamaForCausalLM\\> built |" \
        in report_markdown(noted)
    assert f"  built: {note}\n" in terminal.render(noted)


def test_gpu_memory_sizes_drive_the_marks_and_the_chart(report: ModelReport) -> None:
    # --gpu-memory 8,48: two marks and two chart lines. With 1 GiB of headroom, full fine-tuning's total is over
    # 8 GiB; LoRA's and QLoRA's fit.
    context = dataclasses.replace(report.memory_context, gpu_sizes_gib=(8, 48))
    sized = dataclasses.replace(report, memory_context=context)
    fits = report_view(sized).memory.fits
    assert [fit.gib for fit in fits] == [8, 48]
    totals = [sum(row.values()) for row in (FULL, LORA, QLORA)]
    assert fits[0].fits == tuple(total + GIB <= 8 * GIB for total in totals) == (False, True, True)
    assert charts.memory_chart(sized).references == ((8 * GIB, "8 GiB GPU"), (48 * GIB, "48 GiB GPU"))


@pytest.mark.parametrize("name", ["html", "md"])
def test_the_section_says_how_the_estimate_was_checked_and_what_it_assumes(pages: dict[str, str], name: str) -> None:
    import json
    from importlib import resources

    page = pages[name]
    section = page[page.index("Fine-tuning memory"):page.index("PEFT's own count")]
    summary = json.loads((resources.files("reportgen") / "memory_checks" / "summary.json").read_text())
    # The figures come from make validate-memory's summary, not from the template.
    assert f"within {summary['cpu_worst_percent']:.1f}% of every one" in section
    for check in summary["published"]:
        assert f"{check['within']} of {check['runs']} within the band" in section
    assert "benchmarks/MEMORY.md" in section
    assert "Gradient checkpointing on (the default" in section and "1 GiB of headroom" in section
    assert "attention SDPA" in section


def test_gpu_memory_option_reaches_the_report(tmp_path: Path, run_cli: Cli) -> None:
    result = run_cli.report(tmp_path, ["HuggingFaceTB/SmolLM2-135M-Instruct"], "--no-merge-check", "--ranks", "8",
                            "--gpu-memory", "24,48", "--gpu-headroom", "2")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "HuggingFaceTB--SmolLM2-135M-Instruct" / "report.md").read_text()
    assert "Fits in 24 GiB" in page and "Fits in 48 GiB" in page and "Fits in 80 GiB" not in page
    assert "2 GiB of headroom" in page
    bad = run_cli("inspect", "HuggingFaceTB/SmolLM2-135M-Instruct", "--gpu-memory", "24,x")
    assert bad.exit_code == 2 and "'x' is not a whole number of GiB" in bad.output
