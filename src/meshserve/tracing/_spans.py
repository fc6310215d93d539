"""Spans and the W3C trace context, free when tracing is off.

The request path calls :func:`span` and :func:`server_span` on every
request: with no tracer installed both return :data:`NULL_SPAN`, one shared
object that is its own context manager, so the cost is a global read and a
call. :func:`outgoing` and :func:`traceparent` return empty values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol

__all__ = [
    "NULL_SPAN",
    "Span",
    "SpanKind",
    "enabled",
    "install",
    "outgoing",
    "server_span",
    "span",
    "traceparent",
    "uninstall",
]

AttributeValue = str | bool | int | float
Attributes = Mapping[str, AttributeValue]
SpanKind = Literal["internal", "client", "server"]

_CONTEXT_KEYS = ("traceparent", "tracestate")
"""W3C trace context: the only headers read from a request or written to a hop."""


class Span(Protocol):
    """What callers may do with a span: add attributes once they know them."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...


class _NullSpan:
    """The span of a request when tracing is off: records nothing."""

    __slots__ = ()

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def __enter__(self) -> _NullSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


NULL_SPAN = _NullSpan()
"""The one span handed out while tracing is off."""


class _Installed:
    """The tracer and propagator :func:`install` set (None: tracing off).
    OpenTelemetry's objects are typed ``Any`` here so that this module never
    imports them."""

    tracer: Any = None
    propagator: Any = None
    kinds: Mapping[str, Any] = {}


_installed = _Installed()


def install(*, tracer: Any, propagator: Any, kinds: Mapping[str, Any]) -> None:
    """Turn tracing on (``_setup.configure`` does, with the SDK's objects)."""
    _installed.kinds = kinds
    _installed.propagator = propagator
    _installed.tracer = tracer


def uninstall() -> None:
    """Turn tracing off again."""
    _installed.tracer = None
    _installed.propagator = None
    _installed.kinds = {}


def enabled() -> bool:
    """Whether spans are recorded (for work only a span needs)."""
    return _installed.tracer is not None


def span(
    name: str, *, kind: SpanKind = "internal", attributes: Attributes | None = None
) -> contextlib.AbstractContextManager[Span]:
    """A span, current inside the ``with`` block, child of the current one.
    An exception leaving the block is recorded and marks the span an error."""
    tracer = _installed.tracer
    if tracer is None:
        return NULL_SPAN
    started: contextlib.AbstractContextManager[Span] = tracer.start_as_current_span(
        name, kind=_installed.kinds[kind], attributes=attributes
    )
    return started


def server_span(
    name: str,
    *,
    carrier: Mapping[str, str] | Iterable[tuple[str, str | bytes]],
    attributes: Attributes | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """A request's first span on this process: its parent is the trace
    context the caller sent (``traceparent`` in gRPC metadata, HTTP headers
    or the runtime link's frame), else it starts a trace."""
    tracer = _installed.tracer
    if tracer is None:
        return NULL_SPAN
    context = _installed.propagator.extract(carrier=_context_headers(carrier))
    started: contextlib.AbstractContextManager[Span] = tracer.start_as_current_span(
        name, context=context, kind=_installed.kinds["server"], attributes=attributes
    )
    return started


def _context_headers(
    carrier: Mapping[str, str] | Iterable[tuple[str, str | bytes]],
) -> dict[str, str]:
    if isinstance(carrier, Mapping):
        return {key: carrier[key] for key in _CONTEXT_KEYS if key in carrier}
    return {key: value for key, value in carrier if key in _CONTEXT_KEYS and isinstance(value, str)}


def outgoing() -> tuple[tuple[str, str], ...]:
    """The current trace context as headers for a call to another process
    (empty when tracing is off or no span is current)."""
    if _installed.tracer is None:
        return ()
    headers: dict[str, str] = {}
    _installed.propagator.inject(headers)
    return tuple(headers.items())


def traceparent() -> str:
    """The current span's W3C ``traceparent`` ("" when there is none)."""
    if _installed.tracer is None:
        return ""
    headers: dict[str, str] = {}
    _installed.propagator.inject(headers)
    return headers.get("traceparent", "")
