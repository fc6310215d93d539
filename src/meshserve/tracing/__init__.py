"""OpenTelemetry tracing, a no-op until configured.

A leaf like ``meshserve.metrics``: every layer may use it, it uses no other
part of meshserve. Until :func:`configure` installs a tracer (setting
``tracing.enabled``), :func:`span` returns one shared do-nothing context
manager and :func:`outgoing` an empty tuple: the OpenTelemetry SDK is never
imported and no span object is built on the request path.

- ``_names.py``: span names and attribute keys (OpenTelemetry's semantic
  conventions where one exists, ``meshserve.*`` otherwise).
- ``_spans.py``: :func:`span`, :func:`server_span`, the W3C trace context
  in and out (:func:`outgoing`, :func:`traceparent`).
- ``_setup.py``: :func:`configure`: the SDK, the OTLP exporter and the
  sampler from the standard ``OTEL_*`` variables.

docs/observability.md lists the spans and their attributes.
"""

from meshserve.tracing import _names as names
from meshserve.tracing._setup import Tracing, configure, traced
from meshserve.tracing._spans import (
    NULL_SPAN,
    Span,
    enabled,
    outgoing,
    server_span,
    span,
    traceparent,
)

__all__ = [
    "NULL_SPAN",
    "Span",
    "Tracing",
    "configure",
    "enabled",
    "names",
    "outgoing",
    "server_span",
    "span",
    "traced",
    "traceparent",
]
