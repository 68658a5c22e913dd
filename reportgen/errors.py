"""The one exception family reportgen raises for input a user can fix."""

from __future__ import annotations

import re


class ReportgenError(Exception):
    """A problem with the user's input or environment, with a message to act on."""


class UsageError(ReportgenError):
    """Bad command-line input, found before any work starts (exit status 2)."""


class OutputBusy(ReportgenError):
    """Another reportgen run holds the output folder's lock (exit status 3)."""


class ResolveError(ReportgenError):
    """A line of the models file that cannot be turned into a config."""


class BuildError(ReportgenError):
    """A config that transformers cannot build into a causal LM."""


def one_line(message: str, limit: int = 240) -> str:
    """A library's message in one line: module printouts folded to their class name, whitespace collapsed, cut."""
    # A module's repr runs over many lines: "EncoderLayer(\n  (attn): ...\n)" -> "EncoderLayer".
    message = re.sub(r"(\w+)\(\n.*?\n\)", r"\1", message, flags=re.DOTALL)
    message = " ".join(message.split())
    # A set of names prints in hash order, which changes from run to run: sorted, the same bytes every time.
    message = re.sub(r"\{('[^']*'(?:, '[^']*')*)\}", lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}",
                     message)
    return message if len(message) <= limit else message[: limit - 3].rstrip() + "..."
