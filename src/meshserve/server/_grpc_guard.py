"""A check run before a gRPC handler, whatever kind of handler it is.

The auth and rate-limit interceptors both need the servicer context (the
peer, its certificate) and sometimes the decoded request, which only the
handler sees; so they wrap the handler grpc found rather than deciding in
``intercept_service``. :func:`guard_handler` does that wrapping once for the
four kinds of handler.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc
import grpc.aio

__all__ = ["Enter", "guard_handler"]

Enter = Callable[[Any, grpc.aio.ServicerContext], Awaitable[AbstractContextManager[None]]]
"""Runs before the handler with the request (None for a streamed request:
reading its messages would take them from the handler) and the context. It
ends the call by aborting the context, or returns a context manager the
handler then runs inside."""


def guard_handler(handler: grpc.RpcMethodHandler, enter: Enter) -> grpc.RpcMethodHandler:
    """``handler`` with ``enter`` run before each call."""
    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        behavior = _returning(handler.unary_unary, enter, streamed_request=False)
        return grpc.unary_unary_rpc_method_handler(behavior, **codecs)
    if handler.stream_unary is not None:
        behavior = _returning(handler.stream_unary, enter, streamed_request=True)
        return grpc.stream_unary_rpc_method_handler(behavior, **codecs)
    if handler.unary_stream is not None:
        behavior = _streaming(handler.unary_stream, enter, streamed_request=False)
        return grpc.unary_stream_rpc_method_handler(behavior, **codecs)
    behavior = _streaming(handler.stream_stream, enter, streamed_request=True)
    return grpc.stream_stream_rpc_method_handler(behavior, **codecs)


def _returning(
    inner: Callable[..., Any], enter: Enter, *, streamed_request: bool
) -> Callable[..., Awaitable[Any]]:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        scope = await enter(None if streamed_request else request, context)
        with scope:
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

    return behavior


def _streaming(
    inner: Callable[..., Any], enter: Enter, *, streamed_request: bool
) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(inner):
        # A handler that answers through context.write(): stay a coroutine.
        return _returning(inner, enter, streamed_request=streamed_request)

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        scope = await enter(None if streamed_request else request, context)
        with scope:
            responses = inner(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

    return behavior
