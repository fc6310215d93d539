"""The standard gRPC health service (``grpc.health.v1.Health``) of a public
port, answered from the instance's readiness as it is at each call.

Every service the port serves, and the overall status (service ``""``),
is SERVING while the instance is ready and NOT_SERVING otherwise: while it
starts, and from the moment it stops being ready on its way out (a drain,
or a lame-duck period before it) until the port closes. Readiness is read
at each ``Check``; a ``Watch`` reads it every :data:`WATCH_INTERVAL_S` and
sends each change. A service the port does not serve answers ``Check``
with NOT_FOUND and ``Watch`` with SERVICE_UNKNOWN, as the specification
asks (https://github.com/grpc/grpc/blob/master/doc/health-checking.md).

The service is open with authentication on (``_auth.GRPC_RULES``):
Kubernetes' gRPC probes send no credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["HEALTH_SERVICE", "WATCH_INTERVAL_S", "HealthService"]

HEALTH_SERVICE: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name

WATCH_INTERVAL_S = 0.25
"""How often a Watch reads readiness: how late it may report a change.
Reading a state is a few attribute loads, so a watcher costs nothing
worth a setting; a probe's period is seconds."""

_SERVING: int = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN: int = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService:
    """``grpc.health.v1.Health`` for the ``services`` of one port, SERVING
    while ``ready()``. A servicer by its methods (grpc ships no types to
    derive from)."""

    def __init__(
        self,
        *,
        ready: Callable[[], bool],
        services: Iterable[str],
        interval_s: float = WATCH_INTERVAL_S,
    ) -> None:
        self._ready = ready
        self._services = frozenset(("", *services))
        self._interval_s = interval_s

    def add_to(self, server: grpc.aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    def _status(self, service: str) -> int:
        if service not in self._services:
            return _UNKNOWN
        return _SERVING if self._ready() else _NOT_SERVING

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status(request.service)
        if status == _UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        # Ends when the client cancels or the server stops (cancelling it).
        last: int | None = None
        while True:
            status = self._status(request.service)
            if status != last:
                last = status
                yield health_pb2.HealthCheckResponse(status=status)
            await asyncio.sleep(self._interval_s)
