"""The Open Inference Protocol (KServe v2) over HTTP/REST.

Routes (``[/versions/{version}]`` is optional on every model route)::

    GET  /v2/health/live                 200 {"live": true}
    GET  /v2/health/ready                200 {"ready": true} | 503 {"ready": false}
    GET  /live, /ready                   the same two, at the probes' usual paths
    GET  /v2                             server metadata
    GET  /v2/models/{name}               model metadata
    GET  /v2/models/{name}/ready         200 | 400 (known, not loaded) | 404 (unknown)
    POST /v2/models/{name}/infer         JSON, or Triton's binary tensor extension

At the root only, also ``/v2/openapi.json`` (the OpenAPI 3 document of
these routes, ``_openapi``) and ``/docs`` (a Swagger UI page over it,
``_rest_docs``).

A model route's name goes through ``InferenceBackend.resolve`` together with
ModelMesh's routing headers (``mm-model-id``, ``mm-vmodel-id`` and their
``-bin`` forms), so it may be a vmodel id; replies name the concrete model id.

Every route is also served under ``/namespaces/{namespace}``: there (or
with the ``mm-namespace`` header, or, with authentication on, for a caller
limited to one namespace) a plain name is the model of that name in that
namespace, as it is on a ModelMesh Serving namespace's own Service. So
``<rest>/namespaces/<ns>`` is a base URL any v2 client can use with plain
names, and the status of a resource outside ``default`` publishes
``<rest>/namespaces/<ns>/v2/models/<name>``.

Choices the specifications leave open:

- Model readiness answers as Triton does (tritonclient's ``is_model_ready``
  only looks for 200): 200 ``{"name", "ready": true}`` when a copy is loaded,
  400 ``{"name", "ready": false}`` when the model is known but not loaded
  (an infer would load it), 404 ``{"error"}`` when nothing has that name.
- A version in the URL is passed on in the request (``model_version``);
  the front checks no versions, since a ModelMesh model id names one version.
- Errors are ``{"error": message}``; see ``_rest_errors``.
- Request bodies may be gzip or deflate (``Content-Encoding``); replies are
  never compressed.
- An infer holds its body's bytes in the instance's decode budget
  (``_budget``) until it answers: 429 when the budget has no room. Bodies
  over ``offload_bytes`` are decoded, and their replies encoded, on a worker
  thread, so a large one does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from meshserve import _log_context
from meshserve.protocol import codecs
from meshserve.protocol.access_log import AccessEntry, AccessLog
from meshserve.protocol.inference import TensorMetadata
from meshserve.protocol.routing import (
    REST_NAMESPACE_PREFIX,
    RoutingHeaders,
    in_namespace,
    with_named_vmodel,
)
from meshserve.protocol.service import traced_target
from meshserve.security import caller_namespace
from meshserve.server import _rest_request
from meshserve.server._backend import InferenceBackend
from meshserve.server._budget import DecodeBudget
from meshserve.server._rest_docs import docs_routes
from meshserve.server._rest_errors import (
    Endpoint,
    json_response,
    reports_errors,
    route_error,
    unexpected_error,
)
from meshserve.server._rest_server import RestServer
from meshserve.tracing import Span, server_span
from meshserve.tracing import names as trace

__all__ = ["RestServer", "create_rest_app"]

T = TypeVar("T")

_MODEL = "/v2/models/{name}"
_VERSIONED = "/v2/models/{name}/versions/{version}"


def create_rest_app(
    *,
    backend: InferenceBackend,
    max_message_bytes: int = 16 * 1024 * 1024,
    budget: DecodeBudget | None = None,
    offload_bytes: int = 256 * 1024,
    access_log: AccessLog | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The v2 REST API in front of ``backend``, as an ASGI app.

    ``max_message_bytes`` bounds a request body (after decompression too);
    the default matches ModelMesh Serving's ``grpcMaxMessageSizeBytes``.
    ``budget`` bounds the bytes of the bodies held at once (None: unbounded);
    bodies over ``offload_bytes`` are decoded on a worker thread.
    ``access_log``: write a line per infer there (None: no access log).
    ``extra_routes``: served beside the v2 routes, not under the namespace
    prefix (the status page, ``_status_page``).
    """
    endpoints = _Endpoints(
        backend=backend,
        max_message_bytes=max_message_bytes,
        budget=budget or DecodeBudget(limit_bytes=0),
        offload_bytes=offload_bytes,
    )

    def route(path: str, endpoint: Endpoint, method: str) -> Route:
        return Route(path, reports_errors(endpoint), methods=[method])

    def logged_route(path: str, endpoint: Endpoint, method: str) -> Route:
        if access_log is None:
            return route(path, endpoint, method)
        return Route(path, _logged(reports_errors(endpoint), access_log), methods=[method])

    def model_routes(
        suffix: str, endpoint: Endpoint, method: str, *, make: Callable[..., Route] = route
    ) -> list[Route]:
        return [make(base + suffix, endpoint, method) for base in (_MODEL, _VERSIONED)]

    routes: list[BaseRoute] = [
        route("/v2/health/live", endpoints.live, "GET"),
        route("/v2/health/ready", endpoints.ready, "GET"),
        route("/v2", endpoints.server_metadata, "GET"),
        *model_routes("", endpoints.model_metadata, "GET"),
        *model_routes("/ready", endpoints.model_ready, "GET"),
        *model_routes("/infer", endpoints.infer, "POST", make=logged_route),
    ]
    # Probes at the usual Kubernetes paths, and the API's description:
    # served at the root only.
    own: list[BaseRoute] = [
        route("/live", endpoints.live, "GET"),
        route("/ready", endpoints.ready, "GET"),
        *docs_routes(),
    ]
    return Starlette(
        routes=[*own, *routes, *extra_routes, Mount(REST_NAMESPACE_PREFIX, routes=routes)],
        exception_handlers={HTTPException: route_error, Exception: unexpected_error},
    )


_INFER_ROUTE = "/v2/models/{name}/infer"
_INFER_SPAN = f"POST {_INFER_ROUTE}"
_INFER_ATTRIBUTES = {trace.HTTP_METHOD: "POST", trace.HTTP_ROUTE: _INFER_ROUTE}


class _Endpoints:
    def __init__(
        self,
        *,
        backend: InferenceBackend,
        max_message_bytes: int,
        budget: DecodeBudget,
        offload_bytes: int,
    ) -> None:
        self._backend = backend
        self._limit = max_message_bytes
        self._budget = budget
        self._offload_bytes = offload_bytes

    async def live(self, request: Request) -> Response:
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self._backend.server_ready()
        return json_response({"ready": ready}, status_code=200 if ready else 503)

    async def server_metadata(self, request: Request) -> Response:
        info = self._backend.server_info()
        return json_response(
            {"name": info.name, "version": info.version, "extensions": list(info.extensions)}
        )

    async def model_metadata(self, request: Request) -> Response:
        model_id = self._resolve(request)
        metadata = await self._backend.model_metadata(model_id)
        return json_response(
            {
                "name": model_id,
                "versions": list(metadata.versions),
                "platform": metadata.platform,
                "inputs": [_tensor_metadata(t) for t in metadata.inputs],
                "outputs": [_tensor_metadata(t) for t in metadata.outputs],
            }
        )

    async def model_ready(self, request: Request) -> Response:
        model_id = self._resolve(request)
        ready = self._backend.model_ready(model_id)
        return json_response({"name": model_id, "ready": ready}, status_code=200 if ready else 400)

    async def infer(self, request: Request) -> Response:
        with self._budget.reservation() as held:
            # The whole body is read before anything can fail, so that an
            # error answer leaves the connection reusable.
            body = await _rest_request.read_body(request, limit=self._limit, reservation=held)
            with server_span(
                _INFER_SPAN, carrier=request.headers, attributes=_INFER_ATTRIBUTES
            ) as span:
                return await self._infer(request, body, span)

    async def _infer(self, request: Request, body: bytes, span: Span) -> Response:
        model_id, headers = self._target(request)
        traced_target(span, model_id, headers)
        entry: AccessEntry | None = getattr(request.state, _ACCESS, None)
        if entry is not None:
            entry.target(model_id, headers)
        version = request.path_params.get("version", "")
        header_length = _rest_request.json_length(request)
        offload = len(body) > self._offload_bytes
        decode = (
            functools.partial(codecs.request_from_json, body)
            if header_length is None
            else functools.partial(codecs.decode_binary_request, body, json_length=header_length)
        )
        inference = await _call(
            functools.partial(decode, model_name=model_id, model_version=version), offload=offload
        )
        result = await self._backend.infer(model_id, inference, headers=headers)
        result = dataclasses.replace(result, model_name=model_id, id=inference.id)
        payload, binary_header_length = await _call(
            functools.partial(codecs.encode_binary_response, result, request=inference),
            offload=offload,
        )
        if binary_header_length is None:
            return Response(payload, media_type="application/json")
        return Response(
            payload,
            media_type="application/octet-stream",
            headers={codecs.INFERENCE_HEADER_CONTENT_LENGTH: str(binary_header_length)},
        )

    def _resolve(self, request: Request) -> str:
        return self._target(request)[0]

    def _target(self, request: Request) -> tuple[str, RoutingHeaders]:
        """The model a route names (plain names made ids of the request's
        namespace), and the request's routing headers (naming the vmodel
        when the route's name was one)."""
        _log_context.start_request(request.headers.get(_log_context.REQUEST_ID_HEADER))
        headers = _rest_request.routing_headers(
            request.scope["headers"], path_namespace=request.path_params.get("namespace")
        )
        name, headers = in_namespace(
            request.path_params["name"], headers, default=caller_namespace()
        )
        model_id = self._backend.resolve(name, headers)
        headers = with_named_vmodel(headers, name=name, model_id=model_id)
        _log_context.set_target(model_id, headers.vmodel_id)
        return model_id, headers


# The request.state attribute holding an infer's access-log entry.
_ACCESS = "access_entry"


def _logged(endpoint: Endpoint, access_log: AccessLog) -> Endpoint:
    """``endpoint`` (answering errors itself), writing an access line per call."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        client = request.client
        peer = f"{client.host}:{client.port}" if client is not None else ""
        entry = access_log.start("rest", "ModelInfer", peer=peer)
        setattr(request.state, _ACCESS, entry)
        try:
            response = await endpoint(request)
        except BaseException:
            entry.done(500)  # cancelled, or an error no handler answered
            raise
        entry.done(response.status_code)
        return response

    return wrapper


async def _call(work: Callable[[], T], *, offload: bool) -> T:
    """``work()``, on a worker thread when ``offload`` (it is large)."""
    return await asyncio.to_thread(work) if offload else work()


def _tensor_metadata(tensor: TensorMetadata) -> dict[str, object]:
    return {"name": tensor.name, "datatype": tensor.datatype.value, "shape": list(tensor.shape)}
