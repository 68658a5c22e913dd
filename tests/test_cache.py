"""The result cache: an unchanged model is served from it, any change to its key recomputes it, nothing is trusted.

Every test gets its own empty cache (conftest's result_cache fixture sets REPORTGEN_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reportgen import cache as cache_module
from reportgen.cache import ResultCache
from tests.families import TINY_LLAMA_PARAMS

if TYPE_CHECKING:
    from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft")


def site_bytes(out: Path) -> dict[str, bytes]:
    """Every file of a written site, by path inside it."""
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*")) if path.is_file()}


def cache_column(stdout: str) -> dict[str, str]:
    """model -> reused/recomputed, from the closing table's last column ({} when the table has none)."""
    lines = stdout.splitlines()
    if not lines or not lines[0].rstrip().endswith("cache"):
        return {}
    rows = lines[2:next(n for n, line in enumerate(lines) if line.startswith("wrote "))]
    return {line.split()[0]: line.split()[-1] for line in rows}


def entries(folder: Path) -> list[Path]:
    return sorted((folder / "v1" / "entries").glob("*/*.json"))


def test_a_warm_rerun_serves_every_model_and_writes_the_same_bytes(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, result_cache: Path
) -> None:
    models = [write_config("llama"), write_config("gpt2", family="gpt2")]
    cold = run_cli.report(tmp_path, models, out=tmp_path / "cold")
    assert cold.exit_code == 0, cold.output
    assert cache_column(cold.stdout) == {}  # nothing reused: the table is today's
    assert len(entries(result_cache)) == 2
    warm = run_cli.report(tmp_path, models, "--verbose", out=tmp_path / "warm")
    assert warm.exit_code == 0, warm.output
    assert cache_column(warm.stdout) == {str(models[0]): "reused", str(models[1]): "reused"}
    assert f"INFO: {models[0]}: reused from the cache" in warm.stderr
    assert site_bytes(tmp_path / "warm") == site_bytes(tmp_path / "cold")
    # The served report is the one computed: the tiny Llama's parameters counted by hand (tests/families.py).
    assert run_cli.report_json(tmp_path / "warm", str(models[0]))["model"]["total_params"] == TINY_LLAMA_PARAMS


# Each part of the key, changed between two runs: (extra arguments of the second run, what --verbose names,
# and a check on the second run's report.json that the change reached the numbers).
TINY_WIDER_PARAMS = 8_192 + 2 * (2 * 4_096 + 2 * 2_048 + 3 * 128 * 64 + 2 * 64) + 64  # intermediate 96 -> 128
CHANGES: dict[str, tuple[tuple[str, ...], str, Callable[[dict[str, Any]], bool]]] = {
    "a rank": (("--ranks", "8,16,4"), "the ranks", lambda r: {c["rank"] for c in r["cells"]} == {4, 8, 16}),
    "a scenario": (("--scenario", "mine=q_proj,down_proj"), "the scenarios",
                   lambda r: "mine" in {c["scenario"] for c in r["cells"]}),
    "a memory option": (("--seq-len", "4096"), "the memory assumptions",
                        lambda r: any(a["name"] == "seq_len" and a["value"] == "4096" for a in r["memory_assumptions"])),
    "a method": (("--methods", "lora,dora"), "the methods", lambda r: r["methods"] == ["lora", "dora"]),
    "the merge budget": (("--merge-budget", "0.000001"), "--merge-budget",
                         lambda r: r["merge_check"]["status"] == "skipped"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_option_of_the_run_is_part_of_the_key(
    change: str, tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    extra, named, reached = CHANGES[change]
    model = write_config("llama")
    assert run_cli.report(tmp_path, [model]).exit_code == 0
    again = run_cli.report(tmp_path, [model], "--verbose", *extra)
    assert again.exit_code == 0, again.output
    assert cache_column(again.stdout) == {}  # nothing reused
    assert re.search(rf"INFO: {re.escape(str(model))}: recomputed: .*{re.escape(named)}", again.stderr), again.stderr
    assert reached(run_cli.report_json(tmp_path / "out"))
    # And the changed run is itself served next time.
    third = run_cli.report(tmp_path, [model], *extra)
    assert cache_column(third.stdout) == {str(model): "reused"}


def test_the_config_bytes_are_part_of_the_key(tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli) -> None:
    model = write_config("llama")
    assert run_cli.report(tmp_path, [model], "--no-merge-check").exit_code == 0
    write_config("llama", intermediate_size=128)  # the same path, other bytes
    again = run_cli.report(tmp_path, [model], "--no-merge-check", "--verbose")
    assert f"INFO: {model}: recomputed: the config changed" in again.stderr
    # gate/up/down now 3 * 128*64 per layer instead of 3 * 96*64: counted by hand in TINY_WIDER_PARAMS.
    assert run_cli.report_json(tmp_path / "out")["model"]["total_params"] == TINY_WIDER_PARAMS == 82_240


def test_a_library_version_is_part_of_the_key(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_config("llama")
    assert run_cli.report(tmp_path, [model], "--no-merge-check").exit_code == 0
    real = cache_module.metadata.version
    monkeypatch.setattr(cache_module.metadata, "version", lambda name: "99.0" if name == "peft" else real(name))
    again = run_cli.report(tmp_path, [model], "--no-merge-check", "--verbose")
    assert f"INFO: {model}: recomputed: a library version changed" in again.stderr


def test_reportgens_own_code_is_part_of_the_key(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_config("llama")
    assert run_cli.report(tmp_path, [model], "--no-merge-check").exit_code == 0
    monkeypatch.setattr(cache_module, "code_hash", lambda templates=None, package=None: "0" * 64)
    again = run_cli.report(tmp_path, [model], "--no-merge-check", "--verbose")
    assert f"INFO: {model}: recomputed: reportgen's code or templates changed" in again.stderr


def test_the_code_hash_covers_every_source_file_and_template(tmp_path: Path) -> None:
    package, templates = tmp_path / "reportgen", tmp_path / "templates"
    shutil.copytree(ROOT / "reportgen", package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "templates", templates)
    first = cache_module.code_hash(templates, package)
    assert cache_module.code_hash(templates, package) == first
    (package / "render" / "view.py").write_text((package / "render" / "view.py").read_text() + "\n# edited\n")
    second = cache_module.code_hash(templates, package)
    assert second != first
    (templates / "report.css").write_text((templates / "report.css").read_text() + "\n")
    assert cache_module.code_hash(templates, package) not in (first, second)


def test_every_field_of_the_study_is_a_part_of_the_key() -> None:
    """A field added to the Study (or to the memory assumptions it holds) is covered without naming it."""
    import dataclasses

    from reportgen.pipeline import Study

    key = cache_module.model_key("m", "m", {}, "s", Study(), 1, cache_module.Fingerprint("l", "r"))
    names = {name for name, _ in key.parts}
    assert {f.name for f in dataclasses.fields(Study)} - set(cache_module.NOT_IN_KEY) <= names


@pytest.mark.parametrize("damage", ["truncated", "a number changed", "foreign", "not json"])
def test_a_corrupt_or_foreign_entry_is_recomputed_with_a_one_line_warning(
    damage: str, tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, result_cache: Path
) -> None:
    llama, gpt2 = write_config("llama"), write_config("gpt2", family="gpt2")
    assert run_cli.report(tmp_path, [llama, gpt2], "--no-merge-check", out=tmp_path / "cold").exit_code == 0
    llama_entry = next(path for path in entries(result_cache) if str(llama) in path.read_text())
    gpt2_entry = next(path for path in entries(result_cache) if path != llama_entry)
    text = llama_entry.read_text()
    if damage == "truncated":
        llama_entry.write_text(text[: len(text) // 2])
    elif damage == "a number changed":  # valid JSON, the checksum no longer matches
        llama_entry.write_text(text.replace(f'"total_params": {TINY_LLAMA_PARAMS}', '"total_params": 1', 1))
        assert llama_entry.read_text() != text
    elif damage == "foreign":  # another model's entry under this model's key
        shutil.copyfile(gpt2_entry, llama_entry)
    else:
        llama_entry.write_bytes(b"\x80\x81 not a cache entry")
    again = run_cli.report(tmp_path, [llama, gpt2], "--no-merge-check", out=tmp_path / "warm")
    assert again.exit_code == 0, again.output
    warnings = [line for line in again.stderr.splitlines() if line.startswith("WARNING: ignoring cache entry")]
    assert len(warnings) == 1 and str(llama_entry) in warnings[0], again.stderr
    assert cache_column(again.stdout) == {str(llama): "recomputed", str(gpt2): "reused"}
    assert site_bytes(tmp_path / "warm") == site_bytes(tmp_path / "cold")
    assert json.loads(llama_entry.read_text())["model"] == str(llama)  # stored again, whole


def test_a_failed_model_is_never_cached(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, result_cache: Path
) -> None:
    good, bad = write_config("llama"), write_config("bad", config={"model_type": "llama", "hidden_size": "wide"})
    first = run_cli.report(tmp_path, [good, bad], "--no-merge-check")
    assert first.exit_code == 1
    assert [json.loads(path.read_text())["model"] for path in entries(result_cache)] == [str(good)]
    again = run_cli.report(tmp_path, [good, bad], "--no-merge-check")
    assert again.exit_code == 1
    assert cache_column(again.stdout) == {str(good): "reused", str(bad): "recomputed"}
    assert [f["id"] for f in run_cli.index(tmp_path / "out")["failures"]] == [str(bad)]


def test_no_cache_recomputes_and_leaves_the_cache_alone(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, result_cache: Path
) -> None:
    model = write_config("llama")
    assert run_cli.report(tmp_path, [model], "--no-merge-check").exit_code == 0
    before = {path: path.stat().st_mtime_ns for path in entries(result_cache)}
    again = run_cli.report(tmp_path, [model], "--no-merge-check", "--no-cache", "--ranks", "4")
    assert again.exit_code == 0 and cache_column(again.stdout) == {}
    assert {path: path.stat().st_mtime_ns for path in entries(result_cache)} == before


def test_the_cache_may_not_lie_in_the_output_folder(tmp_path: Path, write_config: Callable[..., Path],
                                                    run_cli: Cli) -> None:
    result = run_cli.report(tmp_path, [write_config("llama")], "--cache-dir", tmp_path / "out" / ".cache")
    assert result.exit_code == 2
    assert "must lie outside the output folder" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_default_cache_is_the_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REPORTGEN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_module.default_cache_dir() == tmp_path / "xdg" / "reportgen"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_module.default_cache_dir() == tmp_path / "home" / ".cache" / "reportgen"


def test_cache_info_and_clear(tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli,
                              result_cache: Path) -> None:
    assert run_cli.report(tmp_path, [write_config("llama"), write_config("gpt2", family="gpt2")]).exit_code == 0
    (result_cache / "mine.txt").write_text("not reportgen's")
    info = run_cli("cache", "info")
    assert info.exit_code == 0
    lines = info.stdout.splitlines()
    assert lines[0] == f"cache: {result_cache}"
    size = sum(path.stat().st_size for path in (result_cache / "v1").rglob("*") if path.is_file())
    assert re.fullmatch(r"size: [0-9.,]+ [KM]B in 2 entries", lines[1])
    assert size > 0 and len(lines) == 4
    assert all("merge check: cpu" in line for line in lines[2:])
    cleared = run_cli("cache", "clear")
    assert cleared.stdout == f"removed 2 entries from {result_cache}\n"
    assert sorted(path.name for path in result_cache.iterdir()) == ["mine.txt"]
    assert run_cli("cache", "info").stdout.splitlines()[1] == "size: 0 B in 0 entries"


def test_the_codec_reads_back_a_whole_report(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    """Every field of a real report survives the cache's JSON (report.json leaves some out), types checked."""
    from reportgen.codec import CodecError, decode, encode
    from reportgen.data import ModelReport
    from reportgen.pipeline import Study, analyse_spec
    from reportgen.resolve import ModelSpec

    report = analyse_spec(ModelSpec(str(write_config("mixtral", family="mixtral")), "test"), "m",
                          Study(merge_check=False, ranks=(4,)))
    data = json.loads(json.dumps(encode(report)))
    assert decode(ModelReport, data) == report
    data["cells"][0]["rank"] = "4"
    with pytest.raises(CodecError, match=r"report.cells\[0\].rank: expected a int"):
        decode(ModelReport, data, "report")


def test_a_fully_cached_run_imports_neither_torch_transformers_nor_peft(
    tmp_path: Path, write_config: Callable[..., Path], result_cache: Path
) -> None:
    """Checked in a fresh interpreter; the same probe on the cold run sees them, so it can fail."""
    models = tmp_path / "models.txt"
    models.write_text(f"{write_config('llama')}\nopenai-community/gpt2\n")
    probe = (
        "import json, sys\n"
        "from reportgen.cli import cli\n"
        "try:\n"
        f"    cli(['report', '--models', {str(models)!r}, '--out', {str(tmp_path / 'out')!r}, '--quiet'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))\n"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT), "REPORTGEN_CACHE_DIR": str(result_cache), "HF_HUB_OFFLINE": "1"}

    def loaded() -> list[str]:
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        result: list[str] = json.loads(done.stdout)
        return result

    assert loaded() == list(HEAVY)  # cold: every model analysed
    assert loaded() == []  # warm: every model served from the cache


def test_a_model_line_keeps_its_newest_entries_only(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    """Every study tried on a model stays until KEEP newer ones replace it: the cache does not grow forever."""
    from reportgen.cache import KEEP, CacheKey
    from reportgen.pipeline import Study, analyse_spec
    from reportgen.resolve import ModelSpec

    report = analyse_spec(ModelSpec(str(write_config("llama")), "test"), "m", Study(merge_check=False, ranks=(4,)))
    store = ResultCache(tmp_path / "cache")
    keys = [CacheKey((("model", "m"), ("ranks", str(n)))) for n in range(KEEP + 3)]
    for n, key in enumerate(keys):
        store.store(key, "m", report, [("m/report.json", "{}")], f"2026-01-01T00:00:{n:02d}")
    assert len(entries(tmp_path / "cache")) == KEEP
    assert [store.load(key) is not None for key in keys] == [False] * 3 + [True] * KEEP
    assert store.load(keys[-1]) == cache_module.CachedModel(report, (("m/report.json", "{}"),))


def test_a_served_model_is_put_in_place_like_a_computed_one(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    """Served from the cache, a model's folder is swapped in whole: the user's own file in it stays, the
    manifest lists its files, and a model no longer in the models file is removed."""
    llama, gpt2 = write_config("llama"), write_config("gpt2", family="gpt2")
    assert run_cli.report(tmp_path, [llama, gpt2], "--no-merge-check").exit_code == 0
    index = run_cli.index(tmp_path / "out")
    llama_slug, gpt2_slug = (model["slug"] for model in index["models"])
    (tmp_path / "out" / llama_slug / "my-notes.txt").write_text("mine")
    page = (tmp_path / "out" / llama_slug / "report.md").read_bytes()
    (tmp_path / "out" / llama_slug / "report.md").write_text("edited by hand")
    again = run_cli.report(tmp_path, [llama], "--no-merge-check")
    assert cache_column(again.stdout) == {str(llama): "reused"}
    assert (tmp_path / "out" / llama_slug / "my-notes.txt").read_text() == "mine"
    assert (tmp_path / "out" / llama_slug / "report.md").read_bytes() == page  # reportgen's own file, restored
    assert not (tmp_path / "out" / gpt2_slug).exists()
    files = run_cli.index(tmp_path / "out")["files"]
    assert f"{llama_slug}/report.json" in files and f"{llama_slug}/my-notes.txt" not in files
    assert not any(name.startswith(f"{gpt2_slug}/") for name in files)


def test_on_a_terminal_the_bar_says_which_models_were_reused(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli, result_cache: Path
) -> None:
    import fcntl
    import pty
    import struct
    import termios

    model = write_config("llama")
    assert run_cli.report(tmp_path, [model], "--no-merge-check").exit_code == 0
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))  # 30 rows, 160 columns
    env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "REPORTGEN_CACHE_DIR": str(result_cache)}
    process = subprocess.Popen(
        [sys.executable, "-m", "reportgen", "report", "--models", str(tmp_path / "models.txt"),
         "--out", str(tmp_path / "out"), "--no-merge-check"], env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    stdout, _ = process.communicate(timeout=300)
    os.close(leader)
    assert process.returncode == 0
    assert f"reused {model}" in screen.decode("utf-8", "replace")
    assert cache_column(stdout.decode()) == {str(model): "reused"}
