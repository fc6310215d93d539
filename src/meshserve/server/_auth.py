"""Authentication and authorisation at the gRPC and REST edges.

:class:`GrpcAuthInterceptor` and :class:`RestAuthMiddleware` read the
caller's credential (``authorization: Bearer <token>``, or the CN of a
client certificate the TLS layer verified), find the action the call needs
and the model ids it names, and refuse with UNAUTHENTICATED / 401 or
PERMISSION_DENIED / 403 (codes from ``meshserve.protocol.status``). Health
probes are open. Calls not listed here need the ``admin`` action: a method
added later is closed until someone decides who may call it.

A call that passes runs its handler inside ``security.acting_as``, so code
below can ask :func:`meshserve.security.check_inference` about the model a
name or vmodel resolved to.

The gRPC interceptor checks inside the handler it returns rather than in
``intercept_service``: only the handler sees the servicer context (which
holds the peer's certificate) and the decoded request (which names the
model), and grpc has decoded that request already, so reading a field costs
nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import Any

import grpc
import grpc.aio
from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshserve import errors, security
from meshserve.protocol import routing, status
from meshserve.security import Action, Authenticator, DeniedHook, NamespaceOf, Principal
from meshserve.server import _rest_request
from meshserve.server._grpc_guard import Enter, GuardInterceptor, RequestBody
from meshserve.server._rest_errors import error_response
from meshserve.server._status_page import STATUS_JSON_PATH, STATUS_PAGE_PATH

__all__ = [
    "GRPC_RULES",
    "GrpcAuthInterceptor",
    "RestAuthMiddleware",
    "RestCall",
    "Rule",
    "rest_call",
    "tls_extension_cn",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """What a call needs: an action, and where in the request its model ids are."""

    action: Action
    model_fields: tuple[str, ...] = ()
    """Request fields that hold model (or vmodel) ids, all checked."""
    routed: bool = False
    """The call honours ModelMesh's mm-model-id / mm-vmodel-id headers,
    which name a model too and are checked as well."""
    label: str = ""
    """The method as counted in metrics (REST: a path template)."""


_V2 = "/inference.GRPCInferenceService/"
_MM = "/mmesh.ModelMesh/"
_ADMIN = "/meshserve.admin.v1.Admin/"
_HEALTH = "/grpc.health.v1.Health/"
_REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/"

GRPC_RULES: Mapping[str, Rule | None] = {
    # Health probes: open, so orchestrators need no credential. None = open.
    _V2 + "ServerLive": None,
    _V2 + "ServerReady": None,
    _V2 + "ServerMetadata": None,
    _HEALTH + "Check": None,
    _HEALTH + "Watch": None,
    _V2 + "ModelReady": Rule("infer", ("name",), routed=True),
    _V2 + "ModelMetadata": Rule("infer", ("name",), routed=True),
    _V2 + "ModelInfer": Rule("infer", ("model_name",), routed=True),
    _MM + "getModelStatus": Rule("read", ("modelId",)),
    _MM + "getVModelStatus": Rule("read", ("vModelId",)),
    # ensureLoaded takes memory on the mesh: a change, not a read.
    _MM + "ensureLoaded": Rule("write", ("modelId",)),
    _MM + "registerModel": Rule("write", ("modelId",)),
    _MM + "unregisterModel": Rule("write", ("modelId",)),
    # Both ends of a vmodel: pointing one's vmodel at another namespace's
    # model would otherwise serve that model to one's own callers.
    _MM + "setVModel": Rule("write", ("vModelId", "targetModelId")),
    _MM + "deleteVModel": Rule("write", ("vModelId",)),
    # Listings span namespaces: the role is checked here, the entries are
    # filtered by the servicer (security.may_see).
    _ADMIN + "ListModels": Rule("read"),
    _ADMIN + "ListVModels": Rule("read"),
    _ADMIN + "StreamModels": Rule("read"),
    _ADMIN + "StreamVModels": Rule("read"),
    # The resources: the role here, each document's or ref's namespace (and
    # admin for Secrets and ClusterServingRuntimes) in the servicer
    # (server._admin_resources), which counts its refusals the same way.
    _ADMIN + "GetResources": Rule("read"),
    _ADMIN + "WatchResources": Rule("read"),
    _ADMIN + "StreamResources": Rule("read"),
    _ADMIN + "ApplyResources": Rule("write"),
    _ADMIN + "DeleteResources": Rule("write"),
    # Reflection shows the published API's schemas, nothing of the mesh's:
    # any caller with a valid credential may list and describe.
    _REFLECTION + "ServerReflectionInfo": Rule("read"),
}
"""Full gRPC method name -> what it needs (None: open). Unlisted: ``admin``."""

_UNLISTED = Rule("admin")


def _grpc_peer_cn(context: grpc.aio.ServicerContext) -> str | None:
    # grpc puts x509_* properties in the auth context only for a peer
    # certificate that chained to the server's CA.
    names = context.auth_context().get("x509_common_name") or ()
    return names[0].decode() if names else None


@dataclasses.dataclass(frozen=True, slots=True)
class _Policy:
    """What both edges share: who the caller is, what they may do, and
    counting the refusals."""

    authenticator: Authenticator
    on_denied: DeniedHook | None
    namespace_of: NamespaceOf

    def admit(
        self,
        rule: Rule,
        *,
        authorization: str | None,
        peer_cn: str | None,
        named: Iterable[str | None],
        headers: routing.RoutingHeaders,
    ) -> Principal:
        """The caller, if it may make the call; raises UnauthenticatedError
        or PermissionDeniedError otherwise."""
        principal = self.authenticator.authenticate(
            bearer=security.parse_bearer(authorization), peer_cn=peer_cn
        )
        model_ids = list(named)
        if rule.routed:
            model_ids += [headers.model_id, headers.vmodel_id]
        checked = [model_id for model_id in dict.fromkeys(model_ids) if model_id]
        if not checked:
            security.authorize(principal, action=rule.action, namespace=None, model_id=None)
        for model_id in checked:
            security.authorize(
                principal,
                action=rule.action,
                namespace=self.namespace_of(model_id),
                model_id=model_id,
            )
        return principal

    def count(self, exc: errors.MeshServeError, label: str) -> None:
        if self.on_denied is not None:
            unauthenticated = isinstance(exc, errors.UnauthenticatedError)
            self.on_denied("unauthenticated" if unauthenticated else "forbidden", label)

    def acting_as(self, principal: Principal, label: str) -> ContextManager[None]:
        return security.acting_as(
            principal, method=label, on_denied=self.on_denied, namespace_of=self.namespace_of
        )


_Denied = (errors.UnauthenticatedError, errors.PermissionDeniedError)


class GrpcAuthInterceptor:
    """Refuses gRPC calls without a valid credential or outside its scope.

    A ``grpc.aio.ServerInterceptor`` by registration (below) rather than by
    inheritance: grpc ships no type information, and a class derived from an
    untyped base would lose its own under mypy.
    """

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        on_denied: DeniedHook | None = None,
        namespace_of: NamespaceOf = security.namespace_of,
        rules: Mapping[str, Rule | None] = GRPC_RULES,
    ) -> None:
        """``on_denied`` is told of each refusal; ``namespace_of`` gives a model
        id's namespace; ``rules`` maps full method names to what they need."""
        self._policy = _Policy(
            authenticator=authenticator, on_denied=on_denied, namespace_of=namespace_of
        )
        self._rules = rules
        # Used on its own (not in a port's GuardInterceptor): its checks
        # alone, each handler wrapped once.
        self._alone = GuardInterceptor((self,))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler: grpc.RpcMethodHandler | None = await self._alone.intercept_service(
            continuation, handler_call_details
        )
        return handler

    def enter_for(self, method: str, handler: grpc.RpcMethodHandler) -> Enter | None:
        """The check of ``method``'s calls (None for the open ones): a
        ``Check`` of ``_grpc_guard``."""
        rule = self._rules.get(method, _UNLISTED)
        if rule is None:
            return None
        return _GrpcGate(policy=self._policy, method=method, rule=rule).enter


grpc.aio.ServerInterceptor.register(GrpcAuthInterceptor)


@dataclasses.dataclass(frozen=True, slots=True)
class _GrpcGate:
    """The check of one method's calls, wrapped around whichever kind of
    handler it has."""

    policy: _Policy
    method: str
    rule: Rule

    async def admit(
        self, request: RequestBody | None, context: grpc.aio.ServicerContext
    ) -> Principal:
        """The caller, or the call ends here (aborted with the mapped status).

        ``request`` is None for a streamed request: reading its messages
        here would take them from the handler, so only what the metadata
        names is checked at the edge. Otherwise it is decoded only once the
        caller is authenticated, and only when the rule names its fields.
        """
        metadata = context.invocation_metadata() or ()
        authorization = next(
            (_text(value) for key, value in metadata if key == "authorization"), None
        )
        # A generator: policy.admit reads it after authenticating.
        named = (
            (getattr(request.message(), field, None) for field in self.rule.model_fields)
            if request is not None
            else ()
        )
        try:
            return self.policy.admit(
                self.rule,
                authorization=authorization,
                peer_cn=_grpc_peer_cn(context),
                named=named,
                headers=routing.routing_headers_from_grpc(metadata),
            )
        except _Denied as exc:
            self.policy.count(exc, self.method)
            await status.abort(context, exc)
        except errors.InvalidRequestError as exc:  # an undecodable body or routing header
            await status.abort(context, exc)

    async def enter(
        self, request: RequestBody | None, context: grpc.aio.ServicerContext
    ) -> ContextManager[None]:
        principal = await self.admit(request, context)
        return self.policy.acting_as(principal, self.method)


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


# -- REST --------------------------------------------------------------

_OPEN_PREFIX = "/v2/health/"
# The server's metadata, and the probes at Kubernetes' usual paths.
_OPEN_PATHS = frozenset({"/v2", "/live", "/ready"})
_DESCRIPTION_PATHS = frozenset({"/v2/openapi.json", "/docs"})
_DOCS_PREFIX = "/docs/"
_MODELS = "/v2/models/"
_MODEL_SUFFIXES = {(): "", ("ready",): "/ready", ("infer",): "/infer"}

_DRAIN_LIMIT = 8 * 1024 * 1024
"""Bytes of a refused request's body read (and dropped) before answering:
closing a socket with unread bytes resets the connection, and the client
would see the reset instead of the 401/403. Beyond this, it may."""


@dataclasses.dataclass(frozen=True, slots=True)
class RestCall:
    """A REST call as the auth layer sees it."""

    rule: Rule
    model_name: str | None = None
    """The ``{name}`` in the path."""


def rest_call(method: str, path: str) -> RestCall | None:
    """What a REST call needs, from its method and (decoded) path; None: open.

    Mirrors the routes of ``meshserve.server._rest``: ``{name}`` is one path
    segment, and ``/versions/{version}`` may follow it. Anything else (a
    route added later, a typo) needs ``admin``.
    """
    if path.startswith(_OPEN_PREFIX) or path in _OPEN_PATHS:
        return None
    if path in _DESCRIPTION_PATHS or path.startswith(_DOCS_PREFIX):
        # The API's description: like reflection over gRPC, any valid credential.
        template = _DOCS_PREFIX + "{asset}" if path.startswith(_DOCS_PREFIX) else path
        return RestCall(Rule("read", label=f"{method} {template}"))
    # The status page: its shell holds no data; the snapshot it polls is
    # a listing, read as the admin API's are (see _status_page).
    if path == STATUS_PAGE_PATH:
        return None
    if path == STATUS_JSON_PATH:
        return RestCall(Rule("read", label=f"{method} {STATUS_JSON_PATH}"))
    if path.startswith(_MODELS):
        parts = path[len(_MODELS) :].split("/")
        name, rest = parts[0], tuple(parts[1:])
        template = "/v2/models/{name}"
        if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
            rest = rest[2:]
            template += "/versions/{version}"
        suffix = _MODEL_SUFFIXES.get(rest)
        if name and suffix is not None:
            label = f"{method} {template}{suffix}"
            return RestCall(Rule("infer", routed=True, label=label), model_name=name)
    return RestCall(dataclasses.replace(_UNLISTED, label=f"{method} (other)"))


def tls_extension_cn(scope: Scope) -> str | None:
    """The CN of a verified client certificate, from the ASGI TLS extension.

    Servers that implement the extension (hypercorn, daphne) fill it in;
    uvicorn does not, so behind uvicorn REST callers use bearer tokens.
    """
    tls = scope.get("extensions", {}).get("tls") or {}
    subject = tls.get("client_cert_name")
    if not subject or tls.get("client_cert_error") is not None:
        return None
    try:
        names = x509.Name.from_rfc4514_string(subject).get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    return str(names[0].value) if names else None


class RestAuthMiddleware:
    """ASGI middleware refusing REST calls without a valid credential or
    outside its scope, with the JSON error body the REST front always uses.

    Plain ASGI rather than Starlette's BaseHTTPMiddleware, so the app runs
    in this call's context and sees the caller set by ``acting_as``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        on_denied: DeniedHook | None = None,
        namespace_of: NamespaceOf = security.namespace_of,
        peer_cn: Callable[[Scope], str | None] = tls_extension_cn,
    ) -> None:
        """``peer_cn`` reads a verified client certificate's CN from the scope."""
        self._app = app
        self._policy = _Policy(
            authenticator=authenticator, on_denied=on_denied, namespace_of=namespace_of
        )
        self._peer_cn = peer_cn

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = rest_call(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if call is None:
            await self._app(scope, receive, send)
            return
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        try:
            principal = self._policy.admit(
                call.rule,
                authorization=next(
                    (_text(value) for key, value in raw_headers if key == b"authorization"), None
                ),
                peer_cn=self._peer_cn(scope),
                named=(call.model_name,),
                headers=_rest_request.routing_headers(raw_headers),
            )
        except _Denied as exc:
            self._policy.count(exc, call.rule.label)
            challenge = isinstance(exc, errors.UnauthenticatedError)
            headers = {"WWW-Authenticate": 'Bearer realm="meshserve"'} if challenge else {}
            await self._refuse(status.http_status(exc), str(exc), headers, scope, receive, send)
            return
        except errors.InvalidRequestError as exc:  # undecodable routing headers
            await self._refuse(status.http_status(exc), str(exc), {}, scope, receive, send)
            return
        with self._policy.acting_as(principal, call.rule.label):
            await self._app(scope, receive, send)

    async def _refuse(
        self,
        status_code: int,
        message: str,
        headers: Mapping[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        if not _expects_continue(scope["headers"]):
            # A client waiting for "100 Continue" has sent no body yet; asking
            # for it would make the server invite the upload.
            await _drain(receive, limit=_DRAIN_LIMIT)
        await error_response(status_code, message, headers=headers)(scope, receive, send)


def _expects_continue(raw_headers: list[tuple[bytes, bytes]]) -> bool:
    return any(key == b"expect" and value.lower() == b"100-continue" for key, value in raw_headers)


async def _drain(receive: Receive, *, limit: int) -> None:
    seen = 0
    while seen <= limit:
        message: Message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
