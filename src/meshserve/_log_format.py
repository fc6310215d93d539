"""How log records are written: readable lines, or JSON, one event a line.

``log.format`` picks one (:func:`configure_logging`): ``console`` (the
default) writes ``time LEVEL logger: message`` followed by the request's
fields in brackets; ``json`` writes one JSON object a line with the fields
listed in docs/observability.md ("Logs"); ``auto`` is console when the
stream is a terminal, JSON otherwise.

Fields come from ``_log_context`` (model, vmodel, instance, request id),
the current OpenTelemetry span when ``opentelemetry-api`` is installed
(trace and span ids; left out when there is no span), and a record's
``extra={"fields": {...}}`` (the access log's code, latency, peer...).
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, Literal, TextIO

from meshserve import _log_context

__all__ = [
    "CONSOLE_FORMAT",
    "EXTRA_FIELDS",
    "ConsoleFormatter",
    "JsonFormatter",
    "LogFormat",
    "configure_logging",
    "writes_json",
]

LogFormat = Literal["auto", "console", "json"]

CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

EXTRA_FIELDS = "fields"
"""``logger.info(..., extra={EXTRA_FIELDS: {...}})`` adds fields to the JSON event."""

# The event's own keys: a record's extra fields never replace them.
_CORE = ("time", "level", "logger", "message")


def _no_trace() -> dict[str, str]:
    return {}


def _trace_reader() -> Callable[[], dict[str, str]]:
    """The current span's ids, read through the OpenTelemetry API if it is installed."""
    try:
        trace: Any = importlib.import_module("opentelemetry.trace")
    except ImportError:
        return _no_trace

    def read() -> dict[str, str]:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return {}
        return {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}

    return read


def _record_fields(record: logging.LogRecord) -> dict[str, object]:
    extra = getattr(record, EXTRA_FIELDS, None)
    return dict(extra) if isinstance(extra, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring)."""

    def __init__(self, *, trace: Callable[[], dict[str, str]] | None = None) -> None:
        super().__init__()
        self._trace = trace or _trace_reader()

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, object] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update(_log_context.fields())
        event.update(self._trace())
        for name, value in _record_fields(record).items():
            if name not in _CORE:
                event[name] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, default=str)


class ConsoleFormatter(logging.Formatter):
    """:data:`CONSOLE_FORMAT`, then the request's fields in brackets,
    except on a line that carries fields of its own (the access log's, which
    name the model, vmodel and peer already, in ModelMesh's form)."""

    def __init__(self) -> None:
        super().__init__(CONSOLE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if _record_fields(record):
            return line
        context = _log_context.fields()
        context.pop("instance", None)  # one per process: noise on every line
        if not context:
            return line
        suffix = " ".join(f"{name}={value}" for name, value in context.items())
        head, newline, tail = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{suffix}]{newline}{tail}"


def configure_logging(log_format: LogFormat, *, stream: TextIO | None = None) -> None:
    """Format every handler of the root logger (a stderr one if it has
    none) in ``log_format``. Levels are left as they are: the run-time
    level change (config key ``logger_level``) keeps working."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(_formatter(log_format, handler))


def writes_json() -> bool:
    """Whether the root logger's handlers write JSON (what else goes to
    stderr should then be a log record too)."""
    root = logging.getLogger()
    return any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)


def _formatter(log_format: LogFormat, handler: logging.Handler) -> logging.Formatter:
    if log_format == "auto":
        stream = getattr(handler, "stream", None)
        log_format = "console" if stream is not None and stream.isatty() else "json"
    return JsonFormatter() if log_format == "json" else ConsoleFormatter()
