"""A real OTLP/gRPC trace receiver for the tests, on loopback.

It implements the OpenTelemetry Collector's
``opentelemetry.proto.collector.trace.v1.TraceService/Export`` with the
official generated code (the ``opentelemetry-proto`` package) and keeps
every span it receives, flattened to :class:`ReceivedSpan`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

__all__ = ["OtlpReceiver", "ReceivedSpan", "otlp_receiver"]


def _value(attribute: KeyValue) -> Any:
    which = attribute.value.WhichOneof("value")
    return getattr(attribute.value, which) if which else None


def _attributes(attributes: Any) -> dict[str, Any]:
    return {attribute.key: _value(attribute) for attribute in attributes}


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    """Hex; empty for a root span."""
    kind: int
    """The OTLP enum: 1 internal, 2 server, 3 client."""
    attributes: dict[str, Any]
    resource: dict[str, Any]
    headers: dict[str, str]
    """The gRPC metadata of the Export call that carried it."""


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.endpoint = ""
        """``http://127.0.0.1:PORT``, the form OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        headers = {key: str(value) for key, value in context.invocation_metadata() or ()}
        received = [
            ReceivedSpan(
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex(),
                kind=span.kind,
                attributes=_attributes(span.attributes),
                resource=_attributes(resource_spans.resource.attributes),
                headers=headers,
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, found: Callable[[list[ReceivedSpan]], bool], *, timeout_s: float = 30.0
    ) -> list[ReceivedSpan]:
        """The spans once ``found`` accepts them; AssertionError after the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans()
            if found(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({span.name for span in spans})
                raise AssertionError(f"spans not received in {timeout_s} s; got {names}")
            time.sleep(0.1)


@contextlib.contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP trace receiver on a free loopback port until the block ends."""
    receiver = OtlpReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    receiver.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.stop(grace=None)
