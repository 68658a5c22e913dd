"""The rendered pages with several methods: side by side, the count explanation, the mismatch banner, shares over 100 %.

Every expected number is worked out by hand below from the published dimensions of the model, or read
from the published totals shipped with the package, never from what the code just computed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import markdown
import pytest

from reportgen import data
from reportgen.data import ModelReport, RunResult
from reportgen.variants import BUILTIN_VARIANTS
from reportgen.render.html import index_html, report_html
from reportgen.render.markdown import index_markdown, report_markdown, summary_markdown
from reportgen.render.view import report_view
from tests.families import study_report, tiny_config
from tests.test_published_totals import CHECKPOINT_TOTALS, PUBLISHED_TOTALS
from tests.update_gold import gold_result

if TYPE_CHECKING:
    from tests.conftest import Cli

# meta-llama/Llama-3.1-8B-Instruct: hidden 4096, 8 kv heads of 128 (1024), MLP 14336, 32 layers; published total.
H, KV, I, LAYERS, R = 4096, 1024, 14336, 32, 16
LLAMA_8B_TOTAL = PUBLISHED_TOTALS["meta-llama/Llama-3.1-8B-Instruct"]
# LoRA on all seven projections: r * (out + in) per matrix. q, o: (H, H); k, v: (KV, H); gate, up: (I, H); down: (H, I).
LLAMA_LORA = R * LAYERS * (2 * (H + H) + 2 * (KV + H) + 3 * (I + H))
# DoRA adds one magnitude per output feature of every adapted layer.
DORA_MAGNITUDES = LAYERS * (H + KV + KV + H + I + I + H)
LLAMA_DORA = LLAMA_LORA + DORA_MAGNITUDES
# rsLoRA: the count of LoRA; the scaling alpha/sqrt(r) with the study's alpha = 2r = 32.
ALPHA = 2 * R

# openai-community/gpt2: 12 layers, c_attn (2304 x 768) Conv1D; 12 causal masks of 1024 x 1024 in the checkpoint.
GPT2_LAYERS, GPT2_QKV, GPT2_EMBED, GPT2_POSITIONS = 12, 3 * 768, 768, 1024
GPT2_C_ATTN_LORA = R * (GPT2_QKV + GPT2_EMBED) * GPT2_LAYERS
GPT2_C_ATTN_DORA = GPT2_C_ATTN_LORA + GPT2_LAYERS * GPT2_QKV
GPT2_MASKS = GPT2_LAYERS * GPT2_POSITIONS**2
FUSED_NOTE = "not applicable: fused (c_attn holds q, k and v in one matrix, so q, v cannot be adapted alone)"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, run_cli: Cli) -> Path:
    """The real command line on GPT-2 and Llama-3.1-8B-Instruct with LoRA, DoRA and rsLoRA at r=16."""
    folder = tmp_path_factory.mktemp("methods")
    result = run_cli.report(folder, ["openai-community/gpt2", "meta-llama/Llama-3.1-8B-Instruct"], "--ranks", "16",
                            "--methods", "lora,dora,rslora", "--no-merge-check", "-q")
    assert result.exit_code == 0, result.output
    return folder / "out"


def page(site: Path, slug: str, name: str) -> str:
    return (site / slug / name).read_text(encoding="utf-8")


def md_row(text: str, start: str) -> str:
    """The first Markdown table row that starts with start."""
    return next(line for line in text.splitlines() if line.startswith(start))


def test_markdown_shows_methods_side_by_side(site: Path) -> None:
    text = page(site, "meta-llama--Llama-3.1-8B-Instruct", "report.md")
    lora_share = f"{100 * LLAMA_LORA / LLAMA_8B_TOTAL:.2f}%"
    dora_share = f"{100 * LLAMA_DORA / LLAMA_8B_TOTAL:.2f}%"
    assert (lora_share, dora_share) == ("0.52%", "0.54%")
    assert "## Methods side by side" in text
    assert md_row(text, "| Scenario | Rank |") == "| Scenario | Rank | LoRA | DoRA (`use_dora=True`) | rsLoRA (`use_rslora=True`) |"
    assert md_row(text, "| **all\\_linear** | r=16 |") == (
        f"| **all\\_linear** | r=16 | {LLAMA_LORA:,} ✓ PEFT ({lora_share}) "
        f"| {LLAMA_DORA:,} ✓ PEFT ({dora_share}; +{DORA_MAGNITUDES:,} vs LoRA) "
        f"| {LLAMA_LORA:,} ✓ PEFT ({lora_share}; same as LoRA) |"
    )
    # rsLoRA's scaling against plain LoRA's, at alpha = 32, r = 16.
    scaling = md_row(text, "| rsLoRA |")
    assert f"α/√r = {ALPHA}/√{R} = {ALPHA / math.sqrt(R):.2f} (α/r would give {ALPHA / R:.2f})" in scaling
    assert md_row(text, "| LoRA |") == f"| LoRA | α/r = {ALPHA}/{R} = {ALPHA / R:.2f} |"
    # Every scenario (three seeds and one per module type) has a row in the rendered table.
    html = markdown.markdown(text, extensions=["tables"])
    table = html.split("Methods side by side")[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 3 + 7


def test_single_method_tables_show_the_first_method_only(site: Path) -> None:
    text = page(site, "meta-llama--Llama-3.1-8B-Instruct", "report.md")
    row = md_row(text, "| **all\\_linear** (domain adaptation) |")
    assert f"{LLAMA_LORA:,} ✓ PEFT" in row and f"{LLAMA_DORA:,}" not in row
    assert "This table and the next show **LoRA**" in text
    # The formulas of every method are listed, DoRA's with its per-layer magnitudes.
    per_layer_q = R * (H + H) + H
    assert f"**all\\_linear**, DoRA, r=16: q\\_proj {per_layer_q:,} x {LAYERS}" in text
    assert f"= {LLAMA_DORA:,}" in text


def test_html_shows_methods_side_by_side(site: Path) -> None:
    text = page(site, "meta-llama--Llama-3.1-8B-Instruct", "report.html")
    methods = text.split('<section id="methods">')[1].split("</section>")[0]
    assert f"+{DORA_MAGNITUDES:,} vs LoRA" in methods
    assert f">{LLAMA_DORA:,}</span>" in methods and f">{LLAMA_LORA:,}</span>" in methods
    assert "<code>use_dora=True</code>" in methods and "<code>use_rslora=True</code>" in methods
    assert f"{ALPHA / math.sqrt(R):.2f} (α/r would give {ALPHA / R:.2f})" in methods
    # Each count carries its formula as a tooltip: down_proj's per-layer DoRA count is r*(H + I) + H.
    assert f"down_proj {R * (H + I) + H:,} x {LAYERS}" in methods
    assert 'class="banner mismatch"' not in text


def test_not_applicable_cells_show_their_reason(site: Path) -> None:
    text = page(site, "openai-community--gpt2", "report.md")
    assert md_row(text, "| **qv\\_only** | r=16 |") == "| **qv\\_only** | r=16 | n/a \\[1\\] | n/a \\[1\\] | n/a \\[1\\] |"
    assert "1. not applicable: fused (c\\_attn holds q, k and v in one matrix" in text
    assert md_row(text, "| **c\\_attn** | r=16 |").startswith(
        f"| **c\\_attn** | r=16 | {GPT2_C_ATTN_LORA:,} ✓ PEFT")
    assert f"{GPT2_C_ATTN_DORA:,} ✓ PEFT" in md_row(text, "| **c\\_attn** | r=16 |")
    html = page(site, "openai-community--gpt2", "report.html")
    assert f'<li id="method-note-1">{FUSED_NOTE}</li>' in html


@pytest.mark.parametrize("name", ["report.md", "report.html"])
def test_explanation_table_shows_published_gpt2_counts(site: Path, name: str) -> None:
    # The published totals: module parameters, and the checkpoint's tensors (12 causal masks more).
    unique, checkpoint = PUBLISHED_TOTALS["openai-community/gpt2"], CHECKPOINT_TOTALS["openai-community/gpt2"]
    assert checkpoint - unique == GPT2_MASKS
    text = page(site, "openai-community--gpt2", name)
    assert "Where every count comes from" in text
    if name == "report.md":
        assert md_row(text, "| parameters, tied weights counted once |").startswith(
            f"| parameters, tied weights counted once | {unique:,} (124.44M) | 0 |")
        assert md_row(text, "| checkpoint tensor total |").startswith(
            f"| checkpoint tensor total | {checkpoint:,} (137.02M) | +{GPT2_MASKS:,} |")
    else:
        counts = text.split('<table class="explanation">')[1].split("</table>")[0]
        assert f'<td class="num">{unique:,}<span class="purpose">' in counts
        assert f'<td class="num">{checkpoint:,}<span class="purpose">137.02M</span></td><td class="num">+{GPT2_MASKS:,}</td>' in counts
        assert "12 causal-mask buffers" in counts


def test_index_names_the_methods(site: Path) -> None:
    text = (site / "index.md").read_text()
    assert "Methods LoRA, DoRA, rsLoRA: the table quotes LoRA" in text
    assert "disagree" not in text


# --- a constructed disagreement ----------------------------------------------------------------


def with_mismatch(report: ModelReport) -> ModelReport:
    """The gold report with qkvo at r=16 made to disagree: PEFT 8 more than the formula."""
    cells = tuple(
        dataclasses.replace(cell, peft_trainable=(cell.formula_trainable or 0) + 8, status=data.MISMATCH,
                            note="MISMATCH: PEFT trains 3,407,880 parameters, the closed form gives 3,407,872")
        if (cell.scenario, cell.rank) == ("qkvo", 16) else cell
        for cell in report.cells
    )
    return dataclasses.replace(report, cells=cells)


def test_a_mismatch_raises_a_banner_on_every_page() -> None:
    gold = gold_result()
    broken = with_mismatch(gold.reports[0])
    result = RunResult(reports=(broken,), failures=(), ranks=gold.ranks, environment=gold.environment)
    html, text = report_html(broken), report_markdown(broken)
    banner = html.split('<div class="banner mismatch" role="alert">')[1].split("</div>")[0]
    assert "disagree in 1 cell" in banner and "<b>qkvo</b>, LoRA, r=16: MISMATCH: PEFT trains 3,407,880" in banner
    assert html.index("banner mismatch") < html.index('<div class="cards">')  # at the top, above everything
    assert "> **⚠ The closed form and PEFT disagree in 1 cell.**" in text
    assert "> - **qkvo**, LoRA, r=16: MISMATCH: PEFT trains 3,407,880" in text
    index = index_html(result)
    assert 'class="banner mismatch"' in index and "&#9888;&nbsp;mismatch" in index
    assert "**⚠ The closed form and PEFT disagree for 1 model.**" in index_markdown(result)
    assert "| ⚠ mismatch |" in index_markdown(result)
    assert "**⚠ The closed form and PEFT disagree for 1 model:**" in summary_markdown(result)
    # Without a disagreement, no banner anywhere.
    assert "banner mismatch" not in report_html(gold.reports[0]) and "⚠" not in report_markdown(gold.reports[0])


# --- studies the CLI run above does not show --------------------------------------------------


def test_share_over_100_percent_is_shown_with_a_footnote(write_config: Callable[..., Path]) -> None:
    # Tiny Mixtral (tests/families.py): router gate (4 experts x 64 hidden) in 2 layers.
    mixtral = tiny_config("mixtral")
    experts, hidden, layers = mixtral["num_local_experts"], mixtral["hidden_size"], mixtral["num_hidden_layers"]
    rank = 8
    trainable = rank * (experts + hidden) * layers  # 1,088
    weights = experts * hidden * layers  # 512
    share = f"{100 * trainable / weights:.2f}%"  # 212.50%
    report = study_report(write_config(family="mixtral"), (BUILTIN_VARIANTS["lora"],), ranks=(rank,))
    text = report_markdown(report)
    assert md_row(text, f"| `gate` | {layers} |") == f"| `gate` | {layers} | {trainable:,} ✓ PEFT | {share} † |"
    assert f"**gate** at r={rank}: {trainable:,} trainable for {weights:,} weights ({share})." in text
    html = report_html(report)
    assert f'{share}<a class="dagger" href="#over-target"' in html and 'id="over-target"' in html


def test_a_study_without_lora_renders_its_own_method(write_config: Callable[..., Path]) -> None:
    # Tiny Llama (tests/families.py): hidden 64, kv 2 heads of 16 = 32, 2 layers. DoRA on q, k, v, o at r=8.
    hidden, kv, layers, rank = 64, 32, 2, 8
    lora = rank * (2 * (hidden + hidden) + 2 * (kv + hidden)) * layers
    dora = lora + layers * (hidden + kv + kv + hidden)  # 7,552
    report = study_report(write_config(), (BUILTIN_VARIANTS["dora"],), ranks=(rank,))
    assert not report_view(report).methods.shown
    text = report_markdown(report)
    assert f"{dora:,} ✓ PEFT" in md_row(text, "| **qkvo**")
    assert "What DoRA trains on LlamaForCausalLM" in text and "Methods side by side" not in text
    page = " ".join(re.sub(r"<[^>]+>", " ", report_html(report)).split())
    # The make-up, per layer: A and B plus DoRA's magnitude vector (one per output feature).
    q, v = rank * (hidden + hidden) + hidden, rank * (hidden + kv) + kv
    assert (f"qkvo , DoRA, r=8: q_proj {q:,} x 2 + k_proj {v:,} x 2 + v_proj {v:,} x 2 + o_proj {q:,} x 2 "
            f"= {dora:,}") in page
