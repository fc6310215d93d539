"""Turning tracing on: the OpenTelemetry SDK and its exporter.

Imported lazily by :func:`configure` only: with tracing off the SDK is never
loaded. The standard variables are honoured as the SDK reads them:
``OTEL_TRACES_EXPORTER`` (``otlp``, the default; ``console``; ``none``),
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_INSECURE``,
``OTEL_EXPORTER_OTLP_CERTIFICATE``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER`` and its argument, and
``OTEL_BSP_*`` (the batch processor), ``OTEL_SDK_DISABLED``. OTLP goes over gRPC, the exporter
meshserve installs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from meshserve.tracing import _spans

__all__ = ["Tracing", "configure", "traced"]

log = logging.getLogger(__name__)

_EXPORTERS = ("otlp", "console", "none")
_GRPC_PROTOCOLS = ("", "grpc")


class Tracing:
    """Tracing as installed by :func:`configure`; :meth:`shutdown` sends what
    is still batched and turns tracing off."""

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def shutdown(self) -> None:
        _spans.uninstall()
        self._provider.shutdown()


def configure(
    *,
    service_name: str,
    instance_id: str = "",
    environ: Mapping[str, str] | None = None,
) -> Tracing | None:
    """Install a tracer exporting as the ``OTEL_*`` variables of ``environ``
    (the process environment by default) say. ``service_name`` is used when
    ``OTEL_SERVICE_NAME`` (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``)
    does not set one; ``instance_id`` becomes ``service.instance.id``.

    None, and nothing installed, when ``OTEL_SDK_DISABLED`` is ``true``.
    Raises ValueError for an exporter or OTLP protocol meshserve cannot use.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        log.info("tracing.enabled, but OTEL_SDK_DISABLED is true: no spans")
        return None
    exporters = _exporter_names(env)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    resource = Resource.create({"service.instance.id": instance_id} if instance_id else {})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    install_kinds = {
        "internal": SpanKind.INTERNAL,
        "client": SpanKind.CLIENT,
        "server": SpanKind.SERVER,
    }
    _spans.install(
        tracer=provider.get_tracer("meshserve"),
        propagator=TraceContextTextMapPropagator(),
        kinds=install_kinds,
    )
    log.info("tracing on: exporting spans to %s", ", ".join(exporters) or "nowhere")
    return Tracing(provider)


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [
        name.strip().lower()
        for name in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    ]
    unknown = [name for name in names if name not in _EXPORTERS]
    if unknown:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} is not an exporter meshserve has "
            f"(one of {', '.join(_EXPORTERS)})"
        )
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if "otlp" in names and protocol.strip().lower() not in _GRPC_PROTOCOLS:
        raise ValueError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol} is not supported: meshserve exports "
            "OTLP over gRPC (grpc)"
        )
    return [name for name in names if name != "none"]


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


@contextlib.contextmanager
def traced(*, enabled: bool, service_name: str, instance_id: str = "") -> Iterator[None]:
    """Tracing on for the block when ``enabled`` (see :func:`configure`),
    the spans still batched sent when it ends; nothing at all otherwise."""
    if not enabled:
        yield
        return
    tracing = configure(service_name=service_name, instance_id=instance_id)
    try:
        yield
    finally:
        if tracing is not None:
            tracing.shutdown()
