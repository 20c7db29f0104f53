"""Structured JSON logs; request id, tenant id and event id travel in contextvars onto every line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, Final

import structlog

# The request's id and tenant, set once per request by servicekit.http's middleware: one ContextVar
# set and reset is cheaper on every request than binding and unbinding structlog's per-key ones.
REQUEST_CONTEXT: ContextVar[Mapping[str, Any] | None] = ContextVar("request_context", default=None)


def merge_request_context(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    context = REQUEST_CONTEXT.get()
    if context:
        for key, value in context.items():
            event.setdefault(key, value)
    return event


class _CurrentStdout:
    """Whatever `sys.stdout` is when a line is written, not when logging was configured: a stream
    swapped out (a test's capture, closed since) must not turn every later log call into an error."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


STDOUT: Final = _CurrentStdout()


def configure_logging(service: str, level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        merge_request_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(STDOUT),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries' stdlib logging goes through the same JSON renderer.
    handler = logging.StreamHandler(STDOUT)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.EventRenamer("message"),
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
