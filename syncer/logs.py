"""Logging for every syncer process, set up once at its start: structlog's processors and renderer
behind one stdlib handler, so that syncer's own lines and those of the libraries (Celery, uvicorn,
SQLAlchemy) come out in one format, carrying the fields bound for the work at hand.

Work that can be followed across processes binds what it is about with `bound` (a delivery's id,
its Sentry issue and Jira key, the cause of a change): every line logged meanwhile in that thread
or task carries them, stdlib lines too.

Formats (`SYNCER_LOG_FORMAT`): `text` for people, one JSON object a line for machines, `auto` (the
default) text on a terminal and JSON otherwise. Tracebacks are plain text in both, never with local
variables: those may hold tokens.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

FORMATS = ("auto", "text", "json")

# The fields that let one event be followed through web, worker and reconcile (see `bound`).
FOLLOWED = ("delivery_id", "sentry_issue_id", "jira_key", "cause")

_configured = False


def configure(level: str = "INFO", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route all logging of this process through structlog's renderer for `fmt`, at `level`. Once
    per process: later calls change nothing (a command may be started from another's process)."""
    global _configured
    if _configured:
        return
    _configured = True
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not _is_terminal(out))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=_is_terminal(out), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings (Celery's about root, say) in the same format


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind `fields` to every line logged in this context until the block ends; a field given as
    None is left out. Every field of `FOLLOWED` is reset at the end too, so what a handler bound
    inside (`bind`) does not leak into the next delivery handled by the same thread."""
    values: dict[str, Any] = dict.fromkeys(FOLLOWED, ...)  # structlog leaves out fields bound to ...
    values.update({name: (... if value is None else value) for name, value in fields.items()})
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


def bind(**fields: Any) -> None:
    """Add fields to the current `bound` context (what a delivery turned out to be about)."""
    structlog.contextvars.bind_contextvars(
        **{name: value for name, value in fields.items() if value is not None}
    )


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

