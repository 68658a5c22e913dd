"""Bad input through the real CLI: one line per failure naming file and line, the rest still reported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError

from tests.families import TINY_LLAMA_PARAMS

if TYPE_CHECKING:
    from tests.conftest import Cli

# qv_only at r=8 on the tiny Llama: q 8*(64+64)*2 layers = 2,048, v 8*(32+64)*2 = 1,536.
TINY_QV_R8 = 2_048 + 1_536


def assert_complete(run_cli: Cli, out: Path, model_id: str) -> None:
    """The tiny Llama's report is all there, with the hand-counted figures."""
    report = run_cli.report_json(out, model_id)
    assert report["model"]["total_params"] == TINY_LLAMA_PARAMS
    assert len(report["cells"]) == 2 * (3 + 7)  # (seed scenarios + one per module type) x ranks 8, 16
    qv = next(c for c in report["cells"] if c["scenario"] == "qv_only" and c["rank"] == 8)
    assert qv["formula_trainable"] == qv["peft_trainable"] == TINY_QV_R8


def test_each_bad_line_fails_alone_and_the_good_models_are_reported(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    good = write_config("good")
    unknown = write_config("unknown", model_type="no_such_model_type")
    malformed = tmp_path / "malformed"
    malformed.mkdir()
    (malformed / "config.json").write_text('{"model_type": "llama",\n "hidden_size": }\n')
    models, out = tmp_path / "models.txt", tmp_path / "out"
    result = run_cli.report(tmp_path, ["# a hand-edited list", good, "nobody/not-bundled-7b",
                                       f"{tmp_path}/missing/config.json", malformed, unknown, good],
                            "--no-merge-check")
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
    assert_complete(run_cli, out, str(good))
    index = run_cli.index(out)
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
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Cli, token: str | None, fix: str
) -> None:
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _gated)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    result = run_cli.report(tmp_path, ["gated-org/gated-model"], "--no-merge-check")
    models = tmp_path / "models.txt"
    assert result.exit_code == 1
    assert result.stderr == f"error: {models}:1: gated-org/gated-model is a gated repo; {fix}\n"
    index = run_cli.index(tmp_path / "out")
    assert index["failures"][0]["error"] == f"{models}:1: gated-org/gated-model is a gated repo; {fix}"


def test_a_base_model_without_causal_lm_class_is_built_with_automodel(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    # ViT has no causal-LM class; its base model ViTModel is one stack of blocks with Linear layers.
    vit = write_config(config={"model_type": "vit", "hidden_size": 64, "num_hidden_layers": 2,
                               "num_attention_heads": 4, "intermediate_size": 128, "image_size": 32,
                               "patch_size": 16})
    result = run_cli.report(tmp_path, [vit], "--no-merge-check")
    assert result.exit_code == 0, result.output
    model = run_cli.report_json(tmp_path / "out", str(vit))["model"]
    assert model["architecture"] == "ViTModel"
    assert model["build_note"] == ("transformers has no causal-LM class for model_type 'vit': "
                                   "built the base model ViTModel (AutoModel), which has no LM head")
    # Hand count: per layer q, k, v, output dense 64*64 each, intermediate and output 128*64 each;
    # outside the blocks, the pooler's dense 64*64 (a Linear that PEFT's all-linear adapts too).
    assert model["linear_params"] == (2 * (4 * 64 * 64 + 64 + 64 + 64 + 64 + 2 * 128 * 64 + 128 + 64)
                                      + 64 * 64 + 64)


def test_an_encoder_decoder_says_why_it_is_not_built(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    t5 = write_config(config={"model_type": "t5", "d_model": 64, "num_layers": 2, "num_heads": 4, "d_ff": 128,
                              "d_kv": 16})
    result = run_cli.report(tmp_path, [t5], "--no-merge-check")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {tmp_path / 'models.txt'}:1: {t5}: model_type 't5' is an encoder-decoder with no causal-LM class "
        "in transformers; reportgen analyses one stack of repeated blocks and would mix encoder and decoder layers\n"
    )


def test_an_unexpected_exception_is_one_line_naming_the_model(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reportgen.analyse

    def broken(*args: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(reportgen.analyse, "module_rows", broken)
    good = write_config("good")
    result = run_cli.report(tmp_path, [good], "--no-merge-check")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {tmp_path / 'models.txt'}:1: {good}: unexpected ZeroDivisionError: boom "
        "(run with --verbose for the traceback)\n"
    )
    verbose = run_cli.report(tmp_path, [good], "--no-merge-check", "--verbose")
    assert "Traceback (most recent call last)" in verbose.stderr
    assert 'raise ZeroDivisionError("boom")' in verbose.stderr


def test_a_scenario_that_matches_nothing_is_named_in_its_cell(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    good = write_config("good")
    result = run_cli.report(tmp_path, [good], "--no-merge-check", "--ranks", "8", "--scenario", "ghost=c_attn,q")
    assert result.exit_code == 0, result.output
    cell = next(c for c in run_cli.report_json(tmp_path / "out", str(good))["cells"] if c["scenario"] == "ghost")
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
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, args: list[str], error: str
) -> None:
    result = run_cli.report(tmp_path, [write_config()], *args)
    assert result.exit_code == 2
    assert result.stderr == f"{USAGE}Error: {error}\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content, error",
    [
        (None, "models file {models} does not exist"),
        ("# only comments\n\n   \n", "models file {models} names no model (only blank lines and comments)"),
    ],
)
def test_a_missing_or_empty_models_file_is_a_usage_error(
    tmp_path: Path, run_cli: Cli, content: str | None, error: str
) -> None:
    models, out = tmp_path / "models.txt", tmp_path / "out"
    if content is None:
        result = run_cli("report", "--models", models, "--out", out)
    else:
        result = run_cli.report(tmp_path, content)
    assert result.exit_code == 2
    assert result.stderr == f"{USAGE}Error: {error.format(models=models)}\n"
    assert not out.exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_output_folder_that_cannot_be_written_is_one_line(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, jobs: str
) -> None:
    out = tmp_path / "taken"
    out.write_text("a file where the output folder should be")
    # With --jobs 2 the worker process that analysed a model writes its folder: its error reaches the user too.
    result = run_cli.report(tmp_path, [write_config("one"), write_config("two")], "--jobs", jobs,
                            "--no-merge-check", "--quiet", out=out)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot write the report to {out}: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert out.read_text() == "a file where the output folder should be"
