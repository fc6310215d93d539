"""RequestDecodingInterceptor wraps each handler once, not on every call."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from meshserve.server._grpc_guard import Deferred, RequestDecodingInterceptor


async def _behavior(request: Any, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _handler() -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(_behavior, request_deserializer=bytes.upper)


class _Details:
    method = "/a.Service/Call"
    invocation_metadata = ()


async def _intercept(
    interceptor: RequestDecodingInterceptor, handler: grpc.RpcMethodHandler
) -> grpc.RpcMethodHandler:
    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return handler

    found: grpc.RpcMethodHandler = await interceptor.intercept_service(continuation, _Details())
    return found


async def test_a_handler_is_wrapped_on_its_first_call_only() -> None:
    interceptor = RequestDecodingInterceptor()
    handler = _handler()
    first = await _intercept(interceptor, handler)
    assert first is not handler
    # The wrapping defers decoding to after the checks, as on every call.
    assert isinstance(first.request_deserializer, Deferred)
    assert first.request_deserializer.parse is bytes.upper
    assert await _intercept(interceptor, handler) is first


async def test_each_handler_gets_its_own_wrapping() -> None:
    interceptor = RequestDecodingInterceptor()
    one, other = _handler(), _handler()
    assert await _intercept(interceptor, one) is not await _intercept(interceptor, other)


async def test_no_handler_stays_none() -> None:
    interceptor = RequestDecodingInterceptor()

    async def continuation(details: Any) -> None:
        return None

    assert await interceptor.intercept_service(continuation, _Details()) is None
