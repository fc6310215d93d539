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
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager as ContextManager
from typing import Any

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
from meshserve.server._grpc_guard import guard_handler
from meshserve.server._rest_errors import error_response

__all__ = ["GrpcRateLimitInterceptor", "RestRateLimitMiddleware", "peer_host", "retry_after"]

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

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method in self._open:
            return handler
        return guard_handler(handler, self._enter)

    async def _enter(
        self, request: object | None, context: grpc.aio.ServicerContext
    ) -> ContextManager[None]:
        try:
            _check(self._limiter, peer_host(context.peer()))
        except errors.RateLimitedError as exc:
            trailers = (*status.error_trailers(exc), (RETRY_AFTER_KEY, retry_after(exc)))
            await context.abort(status.grpc_code(exc), str(exc), trailing_metadata=trailers)
            raise AssertionError("context.abort raises") from exc  # pragma: no cover
        return contextlib.nullcontext()


grpc.aio.ServerInterceptor.register(GrpcRateLimitInterceptor)


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
