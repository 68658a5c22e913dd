"""The output folder always holds one consistent run: one writer, whole-model swaps, the index last, no stale models."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[1]
ENV = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}

# The real CLI, held just before it puts its first file in place until the file named by RELEASE exists.
HOLD = """
import os, sys, time
from pathlib import Path
import reportgen.output as output
commit = output._commit

def held(temporary, target):
    Path(os.environ["HELD"]).write_text(str(os.getpid()))
    while not Path(os.environ["RELEASE"]).exists():
        time.sleep(0.05)
    commit(temporary, target)

output._commit = held
from reportgen.cli import cli
cli(sys.argv[1:], prog_name="reportgen")
"""


def _wait_for(path: Path, process: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 240
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"the run never {what}"
        time.sleep(0.05)


@pytest.fixture
def held_run(tmp_path: Path, write_config: Callable[..., Path]) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """A real `reportgen report` into tmp_path/out, stopped before its first file lands; release() lets it go."""
    models = tmp_path / "first.txt"
    models.write_text(f"{write_config('one')}\n")
    out, held, release = tmp_path / "out", tmp_path / "held", tmp_path / "release"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, "report", "--models", str(models), "--out", str(out), "--no-merge-check"],
        env=ENV | {"HELD": str(held), "RELEASE": str(release)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    _wait_for(held, process, "reached its first file")
    yield process, out, release
    release.touch()
    process.communicate(timeout=120)


def test_a_second_run_into_a_busy_folder_says_who_holds_it_and_exits_3_before_any_work(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli,
    held_run: tuple[subprocess.Popen[str], Path, Path],
) -> None:
    process, out, release = held_run
    before = sorted(p.name for p in out.iterdir())
    result = run_cli.report(tmp_path, [write_config("two", num_hidden_layers=3)], "--no-merge-check", out=out)
    assert result.exit_code == 3
    started = re.escape(time.strftime("%Y-%m-%d"))
    assert re.fullmatch(
        rf"Error: another reportgen run \(pid {process.pid}, started {started} [0-9:]{{8}}\) is writing {re.escape(str(out))}/; "
        r"wait for it to end, or pass --wait to queue behind it\n", result.stderr), result.stderr
    assert sorted(p.name for p in out.iterdir()) == before  # no work: not even a stale temporary removed
    release.touch()
    assert process.wait(timeout=120) == 0
    assert [model["id"] for model in run_cli.index(out)["models"]] == [str(tmp_path / "one")]


def test_with_wait_the_second_run_queues_behind_the_first_and_its_run_is_what_the_folder_holds(
    tmp_path: Path, write_config: Callable[..., Path], held_run: tuple[subprocess.Popen[str], Path, Path],
) -> None:
    process, out, release = held_run
    models = tmp_path / "second.txt"
    models.write_text(f"{write_config('two', num_hidden_layers=3)}\n")
    second = subprocess.Popen(
        [sys.executable, "-m", "reportgen", "report", "--models", str(models), "--out", str(out),
         "--no-merge-check", "--wait"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert second.stderr is not None
    line = second.stderr.readline()  # it says it waits, then waits
    assert line == f"note: waiting for another reportgen run (pid {process.pid}, started " + line.split("started ")[1]
    assert line.endswith(f") to finish writing {out}/\n")
    time.sleep(1)
    assert second.poll() is None
    release.touch()
    assert process.wait(timeout=120) == 0
    stdout, stderr = second.communicate(timeout=240)
    assert second.returncode == 0, stderr
    index = json.loads((out / "index.json").read_text())
    assert [model["id"] for model in index["models"]] == [str(tmp_path / "two")]
    assert not (out / "one").exists()  # the first run's model, no longer in the run: its folder is gone


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_dead_runs_lock_is_taken_over_with_a_note_and_its_debris_repaired(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    assert run_cli.report(tmp_path, [write_config("one")], "--no-merge-check").exit_code == 0
    out = tmp_path / "out"
    slug = run_cli.index(out)["models"][0]["slug"]
    report = (out / slug / "report.json").read_bytes()
    pid = _dead_pid()
    # A run killed mid-swap on a system without an atomic exchange: its model folder set aside, not yet replaced;
    # another model's staging folder half written; a temporary file.
    (out / slug).rename(out / f".reportgen-aside-{slug}")
    (out / ".reportgen-staging-x-abcd1234").mkdir()
    (out / ".reportgen-staging-x-abcd1234" / "report.json").write_text("{half")
    (out / ".index.json.reportgen-1234abcd.tmp").write_text("{half")
    (out / ".reportgen.lock").write_text(json.dumps({"pid": pid, "started": "2026-11-30 10:00:00",
                                                     "host": os.uname().nodename}) + "\n")
    # What is in place between the repair and the new run's own writes: the set-aside folder back, whole.
    from reportgen.folder import repair

    assert repair(out) == [f"restored {slug}", "removed .reportgen-staging-x-abcd1234",
                           "removed .index.json.reportgen-1234abcd.tmp"]
    assert (out / slug / "report.json").read_bytes() == report
    (out / slug).rename(out / f".reportgen-aside-{slug}")  # leave it half-done again, for the real run
    result = run_cli("report", "--models", tmp_path / "models.txt", "--out", out, "--no-merge-check")
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"note: took over the lock of {out}/ from a reportgen run (pid {pid}, started "
                             "2026-11-30 10:00:00) that did not finish; what it left half-done is cleaned up first\n")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".reportgen.lock"]
    assert (out / slug / "report.json").read_bytes() == report  # the same study: the same bytes
    assert (out / ".reportgen.lock").read_text() == ""  # released cleanly: nothing to take over next time


def test_a_dropped_model_loses_its_folder_but_never_a_file_reportgen_did_not_write(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    one, two, three = write_config("one"), write_config("two", num_hidden_layers=3), write_config("three")
    assert run_cli.report(tmp_path, [one, two, three], "--no-merge-check").exit_code == 0
    out = tmp_path / "out"
    slugs = {model["id"]: model["slug"] for model in run_cli.index(out)["models"]}
    (out / "NOTES.md").write_text("the user's")
    (out / slugs[str(one)] / "mine.txt").write_text("the user's, in a dropped model's folder")
    (out / slugs[str(two)] / "kept.txt").write_text("the user's, in a kept model's folder")
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the output folder")
    index = json.loads((out / "index.json").read_text())
    index["files"] += ["../outside.txt", "/etc/hostname", ".reportgen.lock"]  # a crafted manifest names nothing else
    (out / "index.json").write_text(json.dumps(index))

    result = run_cli.report(tmp_path, [two], "--no-merge-check")
    assert result.exit_code == 0
    assert result.stdout.endswith("removed the reports of 2 model folder(s) not in this run's reports: "
                                  f"{', '.join(sorted([slugs[str(one)], slugs[str(three)]]))}\n")
    assert [model["id"] for model in run_cli.index(out)["models"]] == [str(two)]
    assert sorted(p.name for p in (out / slugs[str(one)]).iterdir()) == ["mine.txt"]
    assert not (out / slugs[str(three)]).exists()
    assert (out / slugs[str(two)] / "kept.txt").read_text() == "the user's, in a kept model's folder"
    assert (out / "NOTES.md").read_text() == "the user's"
    assert outside.read_text() == "not in the output folder"
    assert (out / ".reportgen.lock").exists()
    files = run_cli.index(out)["files"]
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert files == sorted(set(on_disk) - {"NOTES.md", f"{slugs[str(one)]}/mine.txt", f"{slugs[str(two)]}/kept.txt"})


def test_a_model_that_now_fails_keeps_no_stale_report_beside_its_failure_line(
    tmp_path: Path, write_config: Callable[..., Path], run_cli: Cli
) -> None:
    one, two = write_config("one"), write_config("two", num_hidden_layers=3)
    assert run_cli.report(tmp_path, [one, two], "--no-merge-check").exit_code == 0
    out = tmp_path / "out"
    slug = run_cli.index(out)["models"][1]["slug"]
    (two / "config.json").write_text("{broken")
    assert run_cli.report(tmp_path, [one, two], "--no-merge-check").exit_code == 1
    index = run_cli.index(out)
    assert [model["id"] for model in index["models"]] == [str(one)]
    assert [failure["id"] for failure in index["failures"]] == [str(two)]
    assert not (out / slug).exists()  # last run's report of it would read as this run's


# --- killed at random moments ------------------------------------------------------------------

# One warm Python (torch, transformers, peft imported once) that forks a `reportgen report` per request and kills
# it: at the k-th event (a file put in place, a folder swapped, a file removed), or after a delay, with SIGKILL to
# its whole process group (its --jobs workers included). It answers each request with the run's wait status and
# the number of events it saw (for a run left to end).
HARNESS = """
import json, os, signal, sys, time
from pathlib import Path
from reportgen.cli import cli
from reportgen import folder, output, peft_count  # noqa: F401  (warm)

def child(job):
    os.setpgid(0, 0)
    events = 0
    def counted(function):
        def wrapper(*args, **kwargs):
            nonlocal events
            events += 1
            if events == job["kill_at"]:
                os.killpg(0, signal.SIGKILL)
            return function(*args, **kwargs)
        return wrapper
    output._commit = counted(output._commit)
    folder._swap = counted(folder._swap)
    Path.unlink = counted(Path.unlink)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1), os.dup2(devnull, 2)
    try:
        cli(job["args"], prog_name="reportgen")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    Path(job["events_file"]).write_text(str(events))
    os._exit(code)

for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(job)
    start = time.monotonic()
    if job["delay"] is not None:
        time.sleep(job["delay"])
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status, "seconds": time.monotonic() - start}), flush=True)
"""


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.events_file = tmp_path / "events"
        self.process = subprocess.Popen([sys.executable, "-c", HARNESS], env=ENV, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)

    def run(self, args: list[str], kill_at: int = 0, delay: float | None = None) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        self.events_file.unlink(missing_ok=True)
        stdin.write(json.dumps({"args": args, "kill_at": kill_at, "delay": delay,
                                "events_file": str(self.events_file)}) + "\n")
        stdin.flush()
        answer: dict[str, Any] = json.loads(stdout.readline())
        answer["events"] = int(self.events_file.read_text()) if self.events_file.exists() else None
        return answer

    def close(self) -> None:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.close()
        self.process.wait(timeout=60)


LINKS = re.compile(r'(?:href|src)="([^"#:]+)"')


def _assert_consistent(out: Path, user_files: dict[str, str]) -> list[str]:
    """The index lists only complete model folders, each one run's, every link resolves; the user's files kept.

    Returns the models the index lists (none when no index was written yet).
    """
    for relative, text in user_files.items():
        assert (out / relative).read_text() == text, relative
    if not (out / "index.json").exists():
        return []
    index = json.loads((out / "index.json").read_text())
    for page in ("index.html", "index.md"):
        for link in LINKS.findall((out / page).read_text()) + re.findall(r"\]\(([^)#:]+)\)", (out / page).read_text()):
            assert (out / link).is_file(), f"{page} links {link}, which is missing"
    for model in index["models"]:
        folder = out / model["slug"]
        report = json.loads((folder / "report.json").read_text())
        ranks = ", ".join(str(rank) for rank in report["ranks"])
        for page in ("report.md", "report.html"):
            text = (folder / page).read_text()
            assert f"at rank {ranks}, counted" in text, f"{folder.name}/{page} is from another run than its report.json"
        for link in re.findall(r"\]\(([^)#:]+)\)", (folder / "report.md").read_text()):
            assert (folder / link).is_file(), f"{folder.name}/report.md links {link}, which is missing"
    return [model["id"] for model in index["models"]]


def test_a_run_killed_at_any_moment_leaves_a_consistent_folder_and_the_next_run_starts_cleanly(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    configs = [write_config(name, num_hidden_layers=layers) for name, layers in
               [("one", 2), ("two", 3), ("three", 1), ("four", 2)]]
    studies = [  # (models, ranks): each drops some models of the others, ranks differ so runs tell apart
        ([configs[0], configs[1]], "4"), ([configs[1], configs[2], configs[3]], "8"), ([configs[3]], "4,8")]
    out = tmp_path / "out"
    harness = Harness(tmp_path)
    user_files = {"NOTES.md": "the user's own file"}

    def args(study: int, jobs: int) -> list[str]:
        models = tmp_path / f"models{study}.txt"
        models.write_text("".join(f"{config}\n" for config in studies[study][0]))
        return ["report", "--models", str(models), "--out", str(out), "--no-merge-check", "--ranks",
                studies[study][1], "--jobs", str(jobs)]

    try:
        first = harness.run(args(0, 1))
        assert first["status"] == 0
        (out / "NOTES.md").write_text(user_files["NOTES.md"])
        events, seconds = first["events"], first["seconds"]
        rng = random.Random(17)
        trials = 20
        for trial in range(trials):
            study = trial % len(studies)
            if trial % 2 == 0:  # at the k-th file, swap or removal, spread over the whole run
                killed = harness.run(args(study, 1), kill_at=1 + (trial // 2) * events // (trials // 2))
            else:  # at a random moment, with worker processes writing
                killed = harness.run(args(study, 2), delay=rng.uniform(0.0, 1.2 * seconds))
            assert killed["status"] in {0, signal.SIGKILL}, killed
            _assert_consistent(out, user_files)
            after = (study + 1) % len(studies)
            assert harness.run(args(after, 1))["status"] == 0
            listed = _assert_consistent(out, user_files)
            assert listed == [str(config) for config in studies[after][0]]
            models = {p.name for p in out.iterdir() if p.is_dir()}
            assert len(models) == len(listed)  # dropped models' folders gone
            assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".reportgen.lock"]
    finally:
        harness.close()


def test_without_an_atomic_exchange_the_old_folder_is_set_aside_and_replaced_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where renameat2 is missing (macOS, Windows, old kernels): the same result, through a set-aside folder."""
    from reportgen import folder

    out = tmp_path / "out"
    assert folder.put_folder(out, "m", [("report.json", "{}"), ("old.svg", "<svg/>")], None) == [
        "m/report.json", "m/old.svg"]
    (out / "m" / "mine.txt").write_text("the user's")
    monkeypatch.setattr(folder, "_exchange", lambda first, second: False)
    renames: list[str] = []
    rename = os.rename

    def logged(source: Any, target: Any) -> None:
        renames.append(f"{Path(source).name} -> {Path(target).name}")
        rename(source, target)

    monkeypatch.setattr(os, "rename", logged)
    folder.put_folder(out, "m", [("report.json", '{"new": 1}')], frozenset({"report.json", "old.svg"}))
    assert sorted(p.name for p in (out / "m").iterdir()) == ["mine.txt", "report.json"]
    assert (out / "m" / "report.json").read_text() == '{"new": 1}'
    assert (out / "m" / "mine.txt").read_text() == "the user's"
    assert renames[0] == "m -> .reportgen-aside-m" and renames[1].endswith(" -> m")
    assert sorted(p.name for p in out.iterdir()) == ["m"]
