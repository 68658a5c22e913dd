"""What libraries say while a model is built and counted: kept for its report, never printed on the terminal.

transformers logs through its own logger (``[transformers] Model config: bos_token_id
must be ...``), other libraries through the root logger or Python's ``warnings``,
and a few print installation hints. ``captured()`` collects all of them for one
model, so that each report lists its own warnings (the same ones whatever ran
before it in the process: a library's "warn once" memory is cleared first) and
the terminal shows only reportgen's own lines. No torch here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

from .errors import one_line

# Library loggers that do not propagate to the root logger (transformers has its own stderr handler).
LIBRARY_LOGGERS = ("transformers", "peft", "accelerate", "torch", "huggingface_hub", "bitsandbytes")
ONCE_METHODS = ("warning_once", "info_once")  # transformers adds these to logging.Logger, memoised per process
LIMIT = 400  # characters of one warning in a report


class _Collect(logging.Handler):
    """A logging handler that keeps each record's message."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"{record.name.split('.')[0]}: {record.getMessage()}")


@contextlib.contextmanager
def captured() -> Iterator[list[str]]:
    """Within the block, library warnings, log records (WARNING and up) and printed text go into the list yielded.

    When the block ends the list holds each distinct message once, in one line, in the order first seen.
    """
    raw: list[str] = []
    collect = _Collect(raw)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in LIBRARY_LOGGERS)]
    saved = [(logger, logger.handlers[:], logger.propagate) for logger in loggers]
    _forget_once()
    printed_out, printed_err = io.StringIO(), io.StringIO()
    found: list[str] = []
    try:
        for logger in loggers:
            logger.handlers = [collect]
            logger.propagate = False
        with warnings.catch_warnings(record=True) as caught, \
                contextlib.redirect_stdout(printed_out), contextlib.redirect_stderr(printed_err):
            warnings.simplefilter("always")  # every model records its own, whatever warned before it
            yield found
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
    raw += [f"{warning.category.__name__}: {warning.message}" for warning in caught]
    raw += [line for line in (printed_out.getvalue() + printed_err.getvalue()).splitlines() if line.strip()]
    found.extend(dict.fromkeys(one_line(message, LIMIT) for message in raw))


def _forget_once() -> None:
    """Clear the per-process memory of transformers' warning_once, so each model's report gets its warnings."""
    for name in ONCE_METHODS:
        method = getattr(logging.Logger, name, None)
        cache_clear = getattr(method, "cache_clear", None)
        if callable(cache_clear):
            cache_clear()
