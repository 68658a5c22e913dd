"""The example workflow (.github/workflows/report.yml) parses, and every command it runs exists here.

make targets and the variables given to them are looked up in the Makefile; reportgen subcommands,
their options and arguments in the click command line itself. Any other program is one of a few shell
built-ins, so a renamed target or option cannot leave the example silently broken.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import yaml

from reportgen.cli import cli

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "report.yml"
SHELL = {"cat", "echo", "exit", "test", "["}


def workflow() -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return loaded


def commands() -> list[list[str]]:
    """Every simple command of every `run:` step, as its words."""
    found = []
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                for part in re.split(r"&&|\|\||;|\|", line.split(" #")[0]):
                    words = shlex.split(part)
                    if words:
                        found.append(words)
    return found


def makefile() -> tuple[set[str], str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE)), text


def check_make(words: list[str]) -> None:
    targets, text = makefile()
    args = iter(words[1:])
    for arg in args:
        if arg == "-C":
            next(args)  # another checkout of this project (the pull request's base)
        elif "=" in arg:
            assert f"$({arg.split('=')[0]})" in text, f"the Makefile takes no variable {arg}"
        else:
            assert arg in targets, f"make {arg}: no such target"


def check_reportgen(words: list[str]) -> None:
    command = cli.commands.get(words[1]) if len(words) > 1 else None
    assert command is not None, f"reportgen {words[1:2]}: no such subcommand"
    options = {name: param for param in command.params if isinstance(param, click.Option) for name in param.opts}
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    positional = 0
    args = iter(words[2:])
    for arg in args:
        if arg.startswith("-"):
            option = options.get(arg.split("=")[0])
            assert option is not None, f"reportgen {words[1]} has no option {arg}"
            if not option.is_flag and "=" not in arg:
                value = next(args)
                if isinstance(option.type, click.Choice):
                    assert value in option.type.choices, f"{arg} {value}: not one of {option.type.choices}"
        else:
            positional += 1
    assert positional <= len(arguments), f"reportgen {words[1]} takes {len(arguments)} arguments: {words}"


def test_the_workflow_parses_and_every_command_exists() -> None:
    flow = workflow()
    assert set(flow["on"]) == {"pull_request", "push"} and flow["on"]["push"]["branches"] == ["main"]
    seen = set()
    for words in commands():
        program = words[0]
        if program == "make":
            check_make(words)
        elif program.split("/")[-1] == "reportgen":
            check_reportgen(words)
        else:
            assert program in SHELL, f"the workflow runs {program!r}, which this test does not know"
        seen.add(" ".join(words[:2]))
    assert {"make report", "make docs", ".venv/bin/reportgen diff"} <= seen


def test_the_pull_request_job_diffs_base_and_head_and_keeps_what_it_made() -> None:
    jobs = workflow()["jobs"]
    steps = jobs["report"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "reportgen diff base/reports reports --out diff.md" in runs
    assert 'cat diff.md >> "$GITHUB_STEP_SUMMARY"' in runs
    upload = next(step for step in steps if str(step.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["with"]["path"].split() == ["reports/", "diff.md", "diff.json"]
    assert upload["if"] == "always()"
    # The docs job publishes the folder make docs builds.
    docs = jobs["docs"]["steps"]
    build = next(step["run"] for step in docs if "make docs" in step.get("run", ""))
    site = re.search(r"SITE=(\S+)", build)
    pages = next(step for step in docs if str(step.get("uses", "")).startswith("actions/upload-pages-artifact"))
    assert site is not None and pages["with"]["path"].rstrip("/") == site.group(1)
