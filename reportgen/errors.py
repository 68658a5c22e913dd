"""The one exception family reportgen raises for input a user can fix."""

from __future__ import annotations


class ReportgenError(Exception):
    """A problem with the user's input or environment, with a message to act on."""


class UsageError(ReportgenError):
    """Bad command-line input, found before any work starts (exit status 2)."""


class ResolveError(ReportgenError):
    """A line of the models file that cannot be turned into a config."""


class BuildError(ReportgenError):
    """A config that transformers cannot build into a causal LM."""
