"""Request rate limits at the gRPC and REST edges.

:class:`GrpcRateLimitInterceptor` and :class:`RestRateLimitMiddleware` count
each call against its caller's token bucket (``security.RateLimiter``) and
refuse it with RESOURCE_EXHAUSTED / 429 (REST adds ``Retry-After``) when the
bucket is empty. The caller is the principal the auth layer authenticated
(``security.current_principal``), so the auth layer must run first, outside
this one; with auth off it is the client's IP address. Health probes, which
auth leaves open, are not counted either.

One limiter serves both ports, so a caller's rate is its gRPC and REST
requests together. Buckets live in the instance: with several instances
behind one address, a caller may get up to that many times the rate.

:class:`GrpcDecodeBudgetInterceptor` holds a ModelInfer body's bytes in the
instance's decode budget (``_budget``) while the call runs, and refuses the
call with RESOURCE_EXHAUSTED when the budget has no room; REST does the
same as it reads a body (``_rest_request.read_body``).

:func:`grpc_connection_options` and :func:`rest_connection_limits` turn the
server settings into the bounds on connections (time, calls, per client).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import Any, NoReturn

import grpc
import grpc.aio
from starlette.types import ASGIApp, Receive, Scope, Send

from meshserve import errors, security
from meshserve.protocol import status
from meshserve.security import RateLimiter
from meshserve.server._auth import (
    _DRAIN_LIMIT,
    GRPC_RULES,
    Rule,
    _drain,
    _expects_continue,
    rest_call,
)
from meshserve.server._budget import DecodeBudget
from meshserve.server._grpc_guard import Enter, GuardInterceptor, RequestBody, takes_bytes
from meshserve.server._rest_connections import ConnectionLimits
from meshserve.server._rest_errors import error_response
from meshserve.settings import ServerSettings

__all__ = [
    "GrpcDecodeBudgetInterceptor",
    "GrpcRateLimitInterceptor",
    "RestRateLimitMiddleware",
    "grpc_connection_options",
    "max_connection_age_s",
    "peer_host",
    "rest_connection_limits",
    "retry_after",
]

RETRY_AFTER_KEY = "retry-after"
"""Trailing metadata of a rate-limited gRPC call: whole seconds to wait, as
HTTP's ``Retry-After``."""


def retry_after(exc: errors.RateLimitedError) -> str:
    """``Retry-After`` for ``exc``: whole seconds, at least 1 (the header has
    no fractions, and 0 would invite an immediate retry)."""
    return str(max(1, math.ceil(exc.retry_after_s)))


def peer_host(peer: str) -> str:
    """The host of a grpc peer string (``ipv4:10.0.0.7:5000`` -> ``10.0.0.7``,
    ``ipv6:[::1]:5000`` -> ``::1``); other forms are kept whole."""
    scheme, _, address = peer.partition(":")
    if scheme not in ("ipv4", "ipv6"):
        return peer
    host = address.rpartition(":")[0] or address
    return host.strip("[]")


def _check(limiter: RateLimiter, client: str | None) -> None:
    principal = security.current_principal()
    if principal is not None:
        limiter.check(f"principal:{principal.name}", caller=f"principal '{principal.name}'")
        return
    host = client or "unknown"
    limiter.check(f"client:{host}", caller=f"client {host}")


class GrpcRateLimitInterceptor:
    """Refuses gRPC calls over the caller's rate with RESOURCE_EXHAUSTED.

    Registered as a ``grpc.aio.ServerInterceptor`` (below), like the auth
    interceptor, and listed after it so that it sees the principal.
    """

    def __init__(
        self, *, limiter: RateLimiter, rules: Mapping[str, Rule | None] = GRPC_RULES
    ) -> None:
        """``rules``: methods mapped to None there (health probes) are not counted."""
        self._limiter = limiter
        self._open = frozenset(method for method, rule in rules.items() if rule is None)
        # Used on its own (not in a port's GuardInterceptor): its check
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
        return None if method in self._open else self._enter

    async def _enter(
        self, request: object | None, context: grpc.aio.ServicerContext
    ) -> ContextManager[None]:
        try:
            _check(self._limiter, peer_host(context.peer()))
        except errors.RateLimitedError as exc:
            await _abort_limited(context, exc)
        return contextlib.nullcontext()


grpc.aio.ServerInterceptor.register(GrpcRateLimitInterceptor)


async def _abort_limited(
    context: grpc.aio.ServicerContext, exc: errors.RateLimitedError
) -> NoReturn:
    trailers = (*status.error_trailers(exc), (RETRY_AFTER_KEY, retry_after(exc)))
    await context.abort(status.grpc_code(exc), str(exc), trailing_metadata=trailers)
    raise AssertionError("context.abort raises") from exc  # pragma: no cover


class GrpcDecodeBudgetInterceptor:
    """Holds each ModelInfer body in the decode budget while its call runs,
    or refuses the call with RESOURCE_EXHAUSTED. ModelInfer is the call
    registered with raw bytes in and out (``protocol.service``): the other
    calls carry small messages."""

    def __init__(self, *, budget: DecodeBudget) -> None:
        self._budget = budget
        # Used on its own (not in a port's GuardInterceptor): its check
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
        """The check of ``handler``'s calls when it is ModelInfer's (takes
        bytes): a ``Check`` of ``_grpc_guard``."""
        return self._enter if takes_bytes(handler) else None

    async def _enter(
        self, request: RequestBody | None, context: grpc.aio.ServicerContext
    ) -> ContextManager[object]:
        held = self._budget.reservation()
        body = None if request is None else request.message()
        if isinstance(body, bytes):
            try:
                held.grow(len(body))
            except errors.ServerBusyError as exc:
                await _abort_limited(context, exc)
        return held


grpc.aio.ServerInterceptor.register(GrpcDecodeBudgetInterceptor)


class RestRateLimitMiddleware:
    """ASGI middleware refusing REST calls over the caller's rate with 429,
    ``Retry-After`` and the JSON error body of the REST front. Wrap it in the
    auth middleware, so that it sees the principal."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter) -> None:
        self._app = app
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or rest_call(scope["method"], scope["path"]) is None:
            await self._app(scope, receive, send)
            return
        client = scope.get("client")
        try:
            _check(self._limiter, client[0] if client else None)
        except errors.RateLimitedError as exc:
            if not _expects_continue(scope["headers"]):
                # Unread body bytes would reset the connection before the 429.
                await _drain(receive, limit=_DRAIN_LIMIT)
            headers = {"Retry-After": retry_after(exc)}
            response = error_response(status.http_status(exc), str(exc), headers=headers)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


def grpc_connection_options(
    settings: ServerSettings, *, shared: bool = False
) -> list[tuple[str, int]]:
    """gRPC server options bounding connections in time and calls
    (``ServerSettings``; gRPC core enforces them). ``shared``: a port
    several instances share (``server.sharePorts``)."""

    def millis(seconds: float) -> int:
        # 0 means "never" in the settings; gRPC's "never" is INT_MAX.
        return round(seconds * 1000) if seconds else _GRPC_INFINITE_MS

    return [
        # The TLS handshake and the HTTP/2 preface and settings must arrive
        # within it: a connection that sends nothing, or half, is closed.
        ("grpc.server_handshake_timeout_ms", millis(settings.header_timeout_s)),
        ("grpc.max_connection_idle_ms", millis(settings.grpc_max_connection_idle_s)),
        ("grpc.max_connection_age_ms", millis(max_connection_age_s(settings, shared=shared))),
        ("grpc.max_connection_age_grace_ms", millis(settings.grpc_max_connection_age_grace_s)),
        ("grpc.keepalive_time_ms", millis(settings.grpc_keepalive_time_s)),
        ("grpc.keepalive_timeout_ms", millis(settings.grpc_keepalive_timeout_s)),
        ("grpc.max_concurrent_streams", settings.grpc_max_streams_per_connection),
    ]


_GRPC_INFINITE_MS = 2**31 - 1


def max_connection_age_s(settings: ServerSettings, *, shared: bool) -> float:
    """How old a client's gRPC connection may grow (0: no limit).

    On a shared port, at most half the lame duck: an instance going away
    stops accepting there at once (the others take new connections) but
    grpc can only ask a client to reconnect when its connection's age is
    up, graciously; stopping the server instead cancels calls that arrived
    but were not picked up yet. So each client has moved to another
    instance before the lame duck ends, whatever its connection's age.
    """
    age = settings.grpc_max_connection_age_s
    if not shared or not settings.lame_duck_s:
        return age
    # gRPC adds up to 10 % jitter to the age.
    handover = settings.lame_duck_s / 2
    return min(age, handover) if age else handover


def rest_connection_limits(settings: ServerSettings) -> ConnectionLimits:
    """The REST port's connection bounds (``ServerSettings``)."""
    return ConnectionLimits(
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        idle_timeout_s=settings.idle_timeout_s,
        max_per_client=settings.max_connections_per_client,
    )
