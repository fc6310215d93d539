"""Registration of a v2 ``GRPCInferenceService`` implementation.

Servers implement the six methods on any object; ModelInfer takes and
returns raw bytes (identity serializers) so that the body can be routed or
forwarded without decoding it on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc
import grpc.aio

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2

__all__ = ["V2Service", "v2_handler"]


class V2Service(Protocol):
    async def ServerLive(
        self, request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerLiveResponse: ...

    async def ServerReady(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse: ...

    async def ModelReady(
        self, request: v2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelReadyResponse: ...

    async def ServerMetadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse: ...

    async def ModelMetadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse: ...

    async def ModelInfer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes: ...


def _unary(method: Callable[..., Any], request: Any = None, response: Any = None) -> Any:
    # None on both sides means identity: the method sees raw bytes.
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request.FromString if request else None,
        response_serializer=response.SerializeToString if response else None,
    )


def v2_handler(service: V2Service) -> grpc.GenericRpcHandler:
    """A handler serving ``inference.GRPCInferenceService`` from ``service``."""
    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ServerLive": _unary(service.ServerLive, v2.ServerLiveRequest, v2.ServerLiveResponse),
            "ServerReady": _unary(
                service.ServerReady, v2.ServerReadyRequest, v2.ServerReadyResponse
            ),
            "ModelReady": _unary(service.ModelReady, v2.ModelReadyRequest, v2.ModelReadyResponse),
            "ServerMetadata": _unary(
                service.ServerMetadata, v2.ServerMetadataRequest, v2.ServerMetadataResponse
            ),
            "ModelMetadata": _unary(
                service.ModelMetadata, v2.ModelMetadataRequest, v2.ModelMetadataResponse
            ),
            "ModelInfer": _unary(service.ModelInfer),
        },
    )
