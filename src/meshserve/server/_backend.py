"""What the front ends (gRPC, REST) need from the instance behind them.

The fronts decode and encode; everything else (which model a name means,
loading it, running it) is the backend's. ``meshserve.mesh.Instance``
implements this protocol; tests may use any object that does.
"""

from __future__ import annotations

from typing import Protocol

from meshserve.protocol.inference import InferenceRequest, InferenceResponse
from meshserve.protocol.routing import NO_HEADERS, RoutingHeaders, ServerInfo
from meshserve.protocol.service import V2Backend

__all__ = ["InferenceBackend", "RoutingHeaders", "ServerInfo"]


class InferenceBackend(V2Backend, Protocol):
    """The instance as the inference front ends see it: the v2 gRPC
    service's backend, plus decoded inference for REST."""

    async def infer(
        self, model_id: str, request: InferenceRequest, *, headers: RoutingHeaders = NO_HEADERS
    ) -> InferenceResponse:
        """Run a request, loading the model first if it is not loaded
        (``headers`` name the vmodel the client named, for the metrics)."""
        ...
