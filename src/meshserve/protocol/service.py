"""The v2 ``inference.GRPCInferenceService``, over any backend.

Both the instance and the runtime server serve it; they differ only in the
backend (what a name means, where a body goes). ModelInfer is registered
with identity (de)serializers: the model is found from a routing header or
field 1 of the body, and the body reaches the backend undecoded, so it can
be forwarded to another process as the client sent it.

A request's plain model names are made ids of the namespace it selects
(``routing.in_namespace``) before the backend resolves them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import replace
from typing import Any, Protocol

import grpc
import grpc.aio

from meshserve import _log_context
from meshserve.errors import ModelNotFoundError
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol.access_log import AccessLog, grpc_status_name
from meshserve.protocol.inference import ModelMetadata
from meshserve.protocol.peek import peek_model_name
from meshserve.protocol.routing import (
    NO_HEADERS,
    Metadata,
    RoutingHeaders,
    ServerInfo,
    in_namespace,
    routing_headers_from_grpc,
    with_named_vmodel,
)
from meshserve.protocol.status import reports_errors
from meshserve.tracing import Span, server_span
from meshserve.tracing import names as trace

__all__ = ["ForwardedInfer", "V2Backend", "forwarded_infer", "traced_target", "v2_handler"]


class V2Backend(Protocol):
    """What the v2 gRPC service needs from whatever serves the models."""

    def resolve(self, name: str, headers: RoutingHeaders) -> str:
        """The concrete model id a request means (headers win over ``name``)."""
        ...

    async def infer_grpc(
        self, model_id: str, body: bytes, *, headers: RoutingHeaders = NO_HEADERS
    ) -> bytes:
        """Run a serialized ModelInferRequest; return a serialized response."""
        ...

    async def model_metadata(
        self, model_id: str, headers: RoutingHeaders = NO_HEADERS
    ) -> ModelMetadata: ...

    def model_ready(self, model_id: str) -> bool: ...

    def server_ready(self) -> bool: ...

    def server_info(self) -> ServerInfo: ...


_INFER_SPAN = "inference.GRPCInferenceService/ModelInfer"
_INFER_ATTRIBUTES = {
    trace.RPC_SYSTEM: "grpc",
    trace.RPC_SERVICE: "inference.GRPCInferenceService",
    trace.RPC_METHOD: "ModelInfer",
}


def traced_target(span: Span, model_id: str, headers: RoutingHeaders) -> None:
    """Name the model (and the vmodel the request named) on a request's span."""
    span.set_attribute(trace.MODEL_ID, model_id)
    if headers.vmodel_id:
        span.set_attribute(trace.VMODEL_ID, headers.vmodel_id)


Peer = Callable[[], str]
"""Who called, for the access log (asked only when it is on)."""


class ForwardedInfer(Protocol):
    """ModelInfer as the internal port serves it, for a forward that came
    another way (the data port): the serialized request and its call
    metadata in, the serialized response out."""

    def __call__(
        self, request: bytes, metadata: Metadata, *, timeout_s: float | None, peer: Peer
    ) -> Awaitable[bytes]: ...


DefaultNamespace = Callable[[], str | None]
"""The namespace of a request that selects none (None: names as given)."""


def _no_namespace() -> None:
    return None


class _V2Service:
    def __init__(
        self,
        backend: V2Backend,
        *,
        internal: bool,
        default_namespace: DefaultNamespace,
        access_log: AccessLog | None,
    ) -> None:
        self._backend = backend
        self._internal = internal
        self._default_namespace = default_namespace
        self._access_log = access_log

    def _target(self, name: str, context: grpc.aio.ServicerContext) -> tuple[str, RoutingHeaders]:
        return self._target_of(name, context.invocation_metadata() or (), context.time_remaining())

    def _target_of(
        self, name: str, metadata: Metadata, remaining: float | None, *, body: bytes | None = None
    ) -> tuple[str, RoutingHeaders]:
        """The model id a request means and its headers (plain names made
        ids of the request's namespace); ``body``: read the name from it
        unless a header names the model. ``remaining``: the call's time left."""
        _log_context.start_request(_client_request_id(metadata))
        headers = routing_headers_from_grpc(metadata, internal=self._internal)
        if body is not None:
            name = "" if headers.given else peek_model_name(body)
        name, headers = in_namespace(name, headers, default=self._default_namespace())
        if remaining is not None:
            # Forwards to other instances take their hop deadlines from it.
            headers = replace(headers, timeout_s=remaining)
        model_id = self._backend.resolve(name, headers)
        # Naming the vmodel when the name was one (the access log and
        # per-model metrics show it).
        headers = with_named_vmodel(headers, name=name, model_id=model_id)
        _log_context.set_target(model_id, headers.vmodel_id)
        return model_id, headers

    def _resolve(self, name: str, context: grpc.aio.ServicerContext) -> str:
        return self._target(name, context)[0]

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
        # Unknown is "not ready", not an error: v2 clients (tritonclient's
        # is_model_ready) and Triton itself treat it that way.
        try:
            model_id = self._resolve(request.name, context)
        except ModelNotFoundError:
            return v2.ModelReadyResponse(ready=False)
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
        model_id, headers = self._target(request.name, context)
        return codecs.metadata_to_proto(await self._backend.model_metadata(model_id, headers))

    @reports_errors
    async def ModelInfer(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self.infer_bytes(
            request,
            context.invocation_metadata() or (),
            timeout_s=context.time_remaining(),
            peer=context.peer,
        )

    async def infer_bytes(
        self, request: bytes, metadata: Metadata, *, timeout_s: float | None, peer: Peer
    ) -> bytes:
        """A serialized ModelInferRequest with its call metadata; the
        serialized response (domain errors raised, as the backend raises them)."""
        # The caller's trace context (a client's, or the forwarding
        # instance's) is the parent of this request's spans here.
        with server_span(_INFER_SPAN, carrier=metadata, attributes=_INFER_ATTRIBUTES) as span:
            if self._access_log is None:
                model_id, headers = self._target_of("", metadata, timeout_s, body=request)
                traced_target(span, model_id, headers)
                return await self._backend.infer_grpc(model_id, request, headers=headers)
            entry = self._access_log.start("grpc", "ModelInfer", peer=peer())
            try:
                model_id, headers = self._target_of("", metadata, timeout_s, body=request)
                traced_target(span, model_id, headers)
                entry.target(model_id, headers)
                reply = await self._backend.infer_grpc(model_id, request, headers=headers)
            except BaseException as exc:
                entry.done(grpc_status_name(exc))
                raise
            entry.done("OK")
            return reply


def _client_request_id(metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key == _log_context.REQUEST_ID_HEADER and isinstance(value, str):
            return value
    return None


def _unary(method: Callable[..., Any], request: Any = None, response: Any = None) -> Any:
    # None on both sides means identity: the method sees raw bytes.
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=request.FromString if request else None,
        response_serializer=response.SerializeToString if response else None,
    )


def forwarded_infer(backend: V2Backend, *, access_log: AccessLog | None = None) -> ForwardedInfer:
    """ModelInfer exactly as the internal port's handler serves it (hop
    headers honoured, no namespace defaulting), outside gRPC: a forward
    that came over the data port. Domain errors are raised, not reported."""
    service = _V2Service(
        backend, internal=True, default_namespace=_no_namespace, access_log=access_log
    )
    return service.infer_bytes


def v2_handler(
    backend: V2Backend,
    *,
    internal: bool = False,
    methods: Collection[str] | None = None,
    default_namespace: DefaultNamespace = _no_namespace,
    access_log: AccessLog | None = None,
) -> grpc.GenericRpcHandler:
    """A handler serving ``inference.GRPCInferenceService`` from ``backend``.

    ``internal``: the handler serves the instance-to-instance port, so the
    hop headers are passed on to the backend. ``methods``: serve only these
    (short names, e.g. ``ModelInfer``); None: all. ``default_namespace``:
    the namespace of a request that selects none, asked per call (the
    caller's own, with authentication on). ``access_log``: write a line per
    ModelInfer there (None: no access log).
    """
    service = _V2Service(
        backend, internal=internal, default_namespace=default_namespace, access_log=access_log
    )
    handlers = {
        "ServerLive": _unary(service.ServerLive, v2.ServerLiveRequest, v2.ServerLiveResponse),
        "ServerReady": _unary(service.ServerReady, v2.ServerReadyRequest, v2.ServerReadyResponse),
        "ModelReady": _unary(service.ModelReady, v2.ModelReadyRequest, v2.ModelReadyResponse),
        "ServerMetadata": _unary(
            service.ServerMetadata, v2.ServerMetadataRequest, v2.ServerMetadataResponse
        ),
        "ModelMetadata": _unary(
            service.ModelMetadata, v2.ModelMetadataRequest, v2.ModelMetadataResponse
        ),
        "ModelInfer": _unary(service.ModelInfer),
    }
    if methods is not None:
        handlers = {name: handler for name, handler in handlers.items() if name in methods}
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)
