"""What the front ends (gRPC, REST) need from the instance behind them.

The fronts decode and encode; everything else (which model a name means,
loading it, running it) is the backend's. ``meshserve.mesh.Instance``
implements this protocol; tests may use any object that does.
"""

from __future__ import annotations

from typing import Protocol

from meshserve.mesh._routing import RoutingHeaders, ServerInfo
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata

__all__ = ["InferenceBackend", "RoutingHeaders", "ServerInfo"]


class InferenceBackend(Protocol):
    """The instance as the inference front ends see it."""

    def resolve(self, name: str, headers: RoutingHeaders) -> str:
        """The concrete model id a request means.

        A routing header wins over ``name``; otherwise ``name`` is tried as a
        vmodel id first, then as a model id. Raises ``ModelNotFoundError``,
        or ``InvalidRequestError`` when both headers are given.
        """
        ...

    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        """Run a request, loading the model first if it is not loaded."""
        ...

    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        """Run a serialized ModelInferRequest; return a serialized response."""
        ...

    async def model_metadata(self, model_id: str) -> ModelMetadata:
        """The model's metadata (loading it if needed)."""
        ...

    def model_ready(self, model_id: str) -> bool:
        """Whether a copy is loaded and can answer now."""
        ...

    def server_ready(self) -> bool: ...

    def server_info(self) -> ServerInfo: ...
