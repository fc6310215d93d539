"""The v2 inference service of an instance (gRPC).

ModelInfer is registered with identity (de)serializers: the front end reads
the model name from field 1 (or a routing header) and hands the body to the
instance undecoded, so a runtime in another process receives the client's
bytes as they were sent.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio

from meshserve.mesh import RoutingHeaders
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol.peek import peek_model_name
from meshserve.protocol.service import v2_handler
from meshserve.protocol.status import reports_errors
from meshserve.server._backend import InferenceBackend

__all__ = ["inference_handler", "routing_headers"]

_HEADERS = {
    "mm-model-id": "model_id",
    "mm-vmodel-id": "vmodel_id",
    "mm-model-id-bin": "model_id",
    "mm-vmodel-id-bin": "vmodel_id",
}


def _text(value: str | bytes) -> str:
    # gRPC hands -bin metadata over already decoded to bytes.
    return value.decode() if isinstance(value, bytes) else value


def routing_headers(metadata: Any) -> RoutingHeaders:
    """ModelMesh's routing headers from gRPC invocation metadata."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        field = _HEADERS.get(key)
        if field is not None:
            found[field] = _text(value)
    if not found:
        return _NO_HEADERS
    return RoutingHeaders(**found)


def routing_headers_from_http(get: Callable[[str], str | None]) -> RoutingHeaders:
    """The same headers from HTTP, where -bin values are base64."""
    found: dict[str, str] = {}
    for key, field in _HEADERS.items():
        value = get(key)
        if value is not None:
            found[field] = base64.b64decode(value).decode() if key.endswith("-bin") else value
    return RoutingHeaders(**found) if found else _NO_HEADERS


_NO_HEADERS = RoutingHeaders()


class _InferenceService:
    def __init__(self, backend: InferenceBackend) -> None:
        self._backend = backend

    @reports_errors
    async def ServerLive(
        self, request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=True)

    @reports_errors
    async def ServerReady(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=self._backend.server_ready())

    @reports_errors
    async def ModelReady(
        self, request: v2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelReadyResponse:
        model_id = self._backend.resolve(
            request.name, routing_headers(context.invocation_metadata())
        )
        return v2.ModelReadyResponse(ready=self._backend.model_ready(model_id))

    @reports_errors
    async def ServerMetadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse:
        info = self._backend.server_info()
        return v2.ServerMetadataResponse(
            name=info.name, version=info.version, extensions=list(info.extensions)
        )

    @reports_errors
    async def ModelMetadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse:
        model_id = self._backend.resolve(
            request.name, routing_headers(context.invocation_metadata())
        )
        return codecs.metadata_to_proto(await self._backend.model_metadata(model_id))

    @reports_errors
    async def ModelInfer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        headers = routing_headers(context.invocation_metadata())
        name = "" if headers.model_id or headers.vmodel_id else peek_model_name(request)
        model_id = self._backend.resolve(name, headers)
        return await self._backend.infer_grpc(model_id, request)


def inference_handler(backend: InferenceBackend) -> grpc.GenericRpcHandler:
    """``inference.GRPCInferenceService`` over ``backend``."""
    return v2_handler(_InferenceService(backend))
