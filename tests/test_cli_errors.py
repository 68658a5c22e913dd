"""Bad input through the real CLI: one line per failure naming file and line, the rest still reported."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from click.testing import CliRunner, Result
from huggingface_hub.errors import GatedRepoError

from reportgen.cli import cli

# The tiny Llama of conftest.py, counted by hand:
#   embeddings 128*64 = 8,192; untied LM head 8,192; final norm 64;
#   per layer q 64*64 = 4,096, k and v 32*64 = 2,048 each, o 4,096,
#   gate/up/down 3 * 128*64 = 24,576, two norms 128 -> 36,992; two layers 73,984.
TINY_TOTAL = 8_192 + 8_192 + 64 + 2 * 36_992  # 90,432
# qv_only at r=8: q 8*(64+64)*2 layers = 2,048, v 8*(32+64)*2 = 1,536.
TINY_QV_R8 = 2_048 + 1_536


def invoke(*args: str) -> Result:
    """The real `reportgen` command line, in process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def report_of(out: Path, model_id: str) -> dict:
    """The report.json the index points at for model_id."""
    index = json.loads((out / "index.json").read_text())
    entry = next(model for model in index["models"] if model["id"] == model_id)
    return json.loads((out / entry["report"]).read_text())


def assert_complete(out: Path, model_id: str) -> None:
    """The tiny Llama's report is all there, with the hand-counted figures."""
    report = report_of(out, model_id)
    assert report["model"]["total_params"] == TINY_TOTAL
    assert len(report["cells"]) == 2 * (3 + 7)  # (seed scenarios + one per module type) x ranks 8, 16
    qv = next(c for c in report["cells"] if c["scenario"] == "qv_only" and c["rank"] == 8)
    assert qv["formula_trainable"] == qv["peft_trainable"] == TINY_QV_R8


def test_each_bad_line_fails_alone_and_the_good_models_are_reported(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    good = write_config("good")
    unknown = write_config("unknown", model_type="no_such_model_type")
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "config.json").write_text('{"model_type": "llama",\n "hidden_size": }\n')
    models = tmp_path / "models.txt"
    models.write_text(
        f"# a hand-edited list\n{good}\nnobody/not-bundled-7b\n{tmp_path}/missing/config.json\n"
        f"{malformed}\n{unknown}\n{good}\n"
    )
    out = tmp_path / "out"
    result = invoke("report", "--models", str(models), "--out", str(out), "--no-merge-check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"note: {models}:7: {good} is a duplicate of {models}:2; reported once",
        f"error: {models}:3: nobody/not-bundled-7b is not bundled and not in the local Hugging Face cache, "
        "and HF_HUB_OFFLINE is set; give a path to its config.json instead, or run with network access "
        "(and HF_TOKEN for gated repos)",
        f"error: {models}:4: {tmp_path}/missing/config.json does not exist "
        "(a line is a model folder, a config.json, or a hub id org/name[@revision])",
        f"error: {models}:5: {malformed}/config.json is not valid JSON "
        "(Expecting value at line 2)",
        f"error: {models}:6: {unknown}: transformers does not know model_type 'no_such_model_type' "
        "(a newer transformers may; or the config needs --trust-remote-code and an auto_map)",
    ]
    assert "Traceback" not in result.output
    assert_complete(out, str(good))
    index = json.loads((out / "index.json").read_text())
    assert [(f["line"], f["status"]) for f in index["failures"]] == [(3, "failed"), (4, "failed"),
                                                                       (5, "failed"), (6, "failed")]
    assert index["notes"] == [f"{models}:7: {good} is a duplicate of {models}:2; reported once"]
    assert [model["id"] for model in index["models"]] == [str(good)]


def _gated(repo: str, *args: object, **kwargs: object) -> str:
    """hf_hub_download as the hub answers for a gated repo without an accepted licence (HTTP 403)."""
    url = f"https://huggingface.co/{repo}/resolve/main/config.json"
    response = httpx2.Response(403, request=httpx2.Request("GET", url))
    raise GatedRepoError(f"403 Client Error. Cannot access gated repo for url {url}.", response=response)


@pytest.mark.parametrize(
    "token, fix",
    [
        (None, "set HF_TOKEN to a token that has accepted its licence"),
        ("hf_fake", "the token in HF_TOKEN has not been granted access: accept the licence on the model's hub page"),
    ],
)
def test_gated_repo_says_how_to_get_access(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str | None, fix: str
) -> None:
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _gated)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    models = tmp_path / "models.txt"
    models.write_text("gated-org/gated-model\n")
    result = invoke("report", "--models", str(models), "--out", str(tmp_path / "out"), "--no-merge-check")
    assert result.exit_code == 1
    assert result.stderr == f"error: {models}:1: gated-org/gated-model is a gated repo; {fix}\n"
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["failures"][0]["error"] == f"{models}:1: gated-org/gated-model is a gated repo; {fix}"


def test_a_base_model_without_causal_lm_class_is_built_with_automodel(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    # ViT has no causal-LM class; its base model ViTModel is one stack of blocks with Linear layers.
    vit = write_config("vit", model_type="vit", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, image_size=32, patch_size=16)
    models = tmp_path / "models.txt"
    models.write_text(f"{vit}\n")
    result = invoke("report", "--models", str(models), "--out", str(tmp_path / "out"), "--no-merge-check")
    assert result.exit_code == 0, result.output
    model = report_of(tmp_path / "out", str(vit))["model"]
    assert model["architecture"] == "ViTModel"
    assert model["build_note"] == ("transformers has no causal-LM class for model_type 'vit': "
                                   "built the base model ViTModel (AutoModel), which has no LM head")
    # Hand count: per layer q, k, v, output dense 64*64 each, intermediate and output 128*64 each;
    # outside the blocks, the pooler's dense 64*64 (a Linear that PEFT's all-linear adapts too).
    assert model["linear_params"] == (2 * (4 * 64 * 64 + 64 + 64 + 64 + 64 + 2 * 128 * 64 + 128 + 64)
                                      + 64 * 64 + 64)


def test_an_encoder_decoder_says_why_it_is_not_built(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    t5 = write_config("t5", model_type="t5", d_model=64, num_layers=2, num_heads=4, d_ff=128, d_kv=16)
    models = tmp_path / "models.txt"
    models.write_text(f"{t5}\n")
    result = invoke("report", "--models", str(models), "--out", str(tmp_path / "out"), "--no-merge-check")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {models}:1: {t5}: model_type 't5' is an encoder-decoder with no causal-LM class in "
        "transformers; reportgen analyses one stack of repeated blocks and would mix encoder and decoder layers\n"
    )


def test_an_unexpected_exception_is_one_line_naming_the_model(
    tmp_path: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import reportgen.analyse

    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(reportgen.analyse, "module_rows", broken)
    good = write_config("good")
    models = tmp_path / "models.txt"
    models.write_text(f"{good}\n")
    args = ["report", "--models", str(models), "--out", str(tmp_path / "out"), "--no-merge-check"]
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {models}:1: {good}: unexpected ZeroDivisionError: boom (run with --verbose for the traceback)\n"
    )
    verbose = invoke(*args, "--verbose")
    assert "Traceback (most recent call last)" in verbose.stderr
    assert 'raise ZeroDivisionError("boom")' in verbose.stderr


def test_a_scenario_that_matches_nothing_is_named_in_its_cell(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    good = write_config("good")
    models = tmp_path / "models.txt"
    models.write_text(f"{good}\n")
    out = tmp_path / "out"
    result = invoke("report", "--models", str(models), "--out", str(out), "--no-merge-check",
                    "--ranks", "8", "--scenario", "ghost=c_attn,q")
    assert result.exit_code == 0, result.output
    cell = next(c for c in report_of(out, str(good))["cells"] if c["scenario"] == "ghost")
    assert (cell["status"], cell["note"], cell["peft_trainable"]) == (
        "no_match", "targets c_attn match no module of this model", None
    )


USAGE = "Usage: reportgen report [OPTIONS]\nTry 'reportgen report --help' for help.\n\n"


@pytest.mark.parametrize(
    "args, error",
    [
        (["--ranks", "0"], "Invalid value for '--ranks': '0' is not a positive integer (example: --ranks 4,8,16,64)"),
        (["--ranks", "8,-4"], "Invalid value for '--ranks': '-4' is not a positive integer (example: --ranks 4,8,16,64)"),
        (["--ranks", "1.5"], "Invalid value for '--ranks': '1.5' is not a positive integer (example: --ranks 4,8,16,64)"),
        (["--ranks", "²"], "Invalid value for '--ranks': '²' is not a positive integer (example: --ranks 4,8,16,64)"),
        (["--ranks", "8,,16"], "Invalid value for '--ranks': '' is not a positive integer (example: --ranks 4,8,16,64)"),
        (["--scenario", "attn"], "Invalid value for '--scenario': 'attn' is not NAME=module[,module...] "
                                 "(example: --scenario attn_mlp=q_proj,v_proj,down_proj)"),
        (["--scenario", "attn=q,"], "Invalid value for '--scenario': 'attn=q,' is not NAME=module[,module...] "
                                    "(example: --scenario attn_mlp=q_proj,v_proj,down_proj)"),
        (["--scenario", "a=q", "--scenario", "a=v"], "Invalid value for '--scenario': scenario 'a' is given twice"),
    ],
)
def test_bad_options_are_usage_errors_before_any_work(
    tmp_path: Path, write_config: Callable[..., Path], args: list[str], error: str
) -> None:
    models = tmp_path / "models.txt"
    models.write_text(f"{write_config()}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "--models", str(models), "--out", str(out), *args],
                                prog_name="reportgen")
    assert result.exit_code == 2
    assert result.stderr == f"{USAGE}Error: {error}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    "content, error",
    [
        (None, "models file {models} does not exist"),
        ("# only comments\n\n   \n", "models file {models} names no model (only blank lines and comments)"),
    ],
)
def test_a_missing_or_empty_models_file_is_a_usage_error(tmp_path: Path, content: str | None, error: str) -> None:
    models = tmp_path / "models.txt"
    if content is not None:
        models.write_text(content)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["report", "--models", str(models), "--out", str(out)], prog_name="reportgen")
    assert result.exit_code == 2
    assert result.stderr == f"{USAGE}Error: {error.format(models=models)}\n"
    assert not out.exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_output_folder_that_cannot_be_written_is_one_line(
    tmp_path: Path, write_config: Callable[..., Path], jobs: str
) -> None:
    models = tmp_path / "models.txt"
    models.write_text(f"{write_config('one')}\n{write_config('two')}\n")
    out = tmp_path / "taken"
    out.write_text("a file where the output folder should be")
    # With --jobs 2 the worker process that analysed a model writes its folder: its error reaches the user too.
    result = CliRunner().invoke(cli, ["report", "--models", str(models), "--out", str(out), "--jobs", jobs,
                                      "--no-merge-check", "--quiet"], prog_name="reportgen")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot write the report to {out}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert out.read_text() == "a file where the output folder should be"
