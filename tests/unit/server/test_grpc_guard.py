"""GuardInterceptor (and RequestDecodingInterceptor, one with no checks):
each handler wrapped once, not on every call; a port's checks in one
layer, run in turn, each inside the scopes of those before it, the request
decoded after them all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import grpc
import grpc.aio

from meshserve.server._grpc_guard import (
    Deferred,
    Enter,
    GuardInterceptor,
    RequestBody,
    RequestDecodingInterceptor,
)


async def _behavior(request: Any, context: grpc.aio.ServicerContext) -> bytes:
    return b""


def _handler() -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(_behavior, request_deserializer=bytes.upper)


class _Details:
    method = "/a.Service/Call"
    invocation_metadata = ()


class _OtherDetails(_Details):
    method = "/a.Service/Other"


async def _intercept(
    interceptor: GuardInterceptor, handler: grpc.RpcMethodHandler, details: Any = None
) -> grpc.RpcMethodHandler:
    async def continuation(details: Any) -> grpc.RpcMethodHandler:
        return handler

    found: grpc.RpcMethodHandler = await interceptor.intercept_service(
        continuation, details or _Details()
    )
    return found


class _Recorded:
    """A check that writes what it does to ``log``; it skips ``skip``."""

    def __init__(self, name: str, log: list[str], *, skip: str = "") -> None:
        self._name = name
        self._log = log
        self._skip = skip

    def enter_for(self, method: str, handler: grpc.RpcMethodHandler) -> Enter | None:
        if method == self._skip:
            return None
        return self._enter

    async def _enter(
        self, request: RequestBody | None, context: grpc.aio.ServicerContext
    ) -> AbstractContextManager[object]:
        assert request is not None
        self._log.append(f"{self._name} checks {request._value!r}")
        return self._scope()

    @contextlib.contextmanager
    def _scope(self) -> Iterator[None]:
        self._log.append(f"{self._name} in")
        try:
            yield
        finally:
            self._log.append(f"{self._name} out")


async def test_checks_run_in_turn_in_one_layer_and_the_request_is_decoded_after() -> None:
    log: list[str] = []

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        log.append(f"handler gets {request!r}")
        return b"done"

    handler = grpc.unary_unary_rpc_method_handler(behavior, request_deserializer=bytes.upper)
    interceptor = GuardInterceptor([_Recorded("auth", log), _Recorded("limit", log)])
    guarded = await _intercept(interceptor, handler)
    assert isinstance(guarded.request_deserializer, Deferred)
    # No grpc server needed: the checks here neither abort nor read the context.
    assert await guarded.unary_unary(b"body", None) == b"done"
    assert log == [
        "auth checks b'body'",
        "auth in",
        "limit checks b'body'",
        "limit in",
        "handler gets b'BODY'",
        "limit out",
        "auth out",
    ]


async def test_a_check_that_skips_a_method_is_not_run_for_it() -> None:
    log: list[str] = []
    handler = _handler()
    interceptor = GuardInterceptor([_Recorded("auth", log, skip=_OtherDetails.method)])
    skipped = await _intercept(interceptor, handler, _OtherDetails())
    checked = await _intercept(interceptor, handler)
    # The same handler under two methods: a wrapping each.
    assert skipped is not checked
    assert await skipped.unary_unary(b"x", None) == b""
    assert log == []
    assert await checked.unary_unary(b"x", None) == b""
    assert log == ["auth checks b'x'", "auth in", "auth out"]


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
