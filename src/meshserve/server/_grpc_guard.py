"""A check run before a gRPC handler, whatever kind of handler it is, and
the request decoded only after it.

The auth and rate-limit interceptors both need the servicer context (the
peer, its certificate) and sometimes the decoded request, which only the
handler sees; so they wrap the handler grpc found rather than deciding in
``intercept_service``. :func:`guard_handler` does that wrapping once for the
four kinds of handler.

A generated servicer's handler has grpc decode the request before any
wrapper runs: a caller with no credential would get its bytes parsed, and
bytes that do not parse would end the call with UNKNOWN. So a guarded
handler takes the request as bytes (a :class:`Deferred` deserializer hands
them on and keeps the real one), runs its check, and only then decodes it
(a :class:`RequestBody` the check may decode earlier, say for the model ids
it names), ending the call with INVALID_ARGUMENT when the bytes are not a
message. :class:`RequestDecodingInterceptor`, the innermost interceptor of
every server, guards every handler that way, so no request is decoded by
grpc itself.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import grpc
import grpc.aio

from meshserve.errors import InvalidRequestError
from meshserve.protocol import codecs, status

__all__ = [
    "Check",
    "Deferred",
    "Enter",
    "GuardInterceptor",
    "RequestBody",
    "RequestDecodingInterceptor",
    "guard_handler",
    "takes_bytes",
]

Parse = Callable[[bytes], Any]


class Deferred:
    """A request deserializer that leaves grpc's bytes as they are and keeps
    the real one (``parse``; None: the method takes bytes) for the guard."""

    __slots__ = ("parse",)

    def __init__(self, parse: Parse | None) -> None:
        self.parse = parse

    def __call__(self, raw: bytes) -> bytes:
        return raw


class RequestBody:
    """A unary call's request: the bytes received until :meth:`message` is
    first asked for, the decoded message after."""

    __slots__ = ("_parse", "_value")

    def __init__(self, value: Any, parse: Parse | None) -> None:
        self._value = value
        self._parse = parse

    def message(self) -> Any:
        """The request decoded (bytes for a method that takes bytes);
        InvalidRequestError when the bytes are not a message of its type."""
        if self._parse is not None and isinstance(self._value, bytes):
            self._value = codecs.parse_message(self._parse, self._value)
        return self._value


Enter = Callable[
    [RequestBody | None, grpc.aio.ServicerContext], Awaitable[AbstractContextManager[object]]
]
"""Runs before the handler with the request (None for a streamed request:
reading its messages would take them from the handler) and the context. It
ends the call by aborting the context, or returns a context manager the
handler then runs inside."""


def takes_bytes(handler: grpc.RpcMethodHandler) -> bool:
    """Whether ``handler``'s method takes its request as raw bytes (ModelInfer
    is registered so: ``protocol.service``), guarded already or not."""
    deserializer = handler.request_deserializer
    if isinstance(deserializer, Deferred):
        return deserializer.parse is None
    return deserializer is None


class Check(Protocol):
    """One of the checks a :class:`GuardInterceptor` runs before a call."""

    def enter_for(self, method: str, handler: grpc.RpcMethodHandler) -> Enter | None:
        """What to run before each call of ``method`` (the full name) served
        by ``handler`` (None: nothing for it). Asked once per method and
        handler: the answer may depend on those two only."""
        ...


def guard_handler(handler: grpc.RpcMethodHandler, enter: Enter) -> grpc.RpcMethodHandler:
    """``handler`` with ``enter`` run before each call, and a unary request
    decoded only after it (see the module's docstring)."""
    return _guarded(handler, enter)


def _guarded(handler: grpc.RpcMethodHandler, enter: Enter | None) -> grpc.RpcMethodHandler:
    deserializer = handler.request_deserializer
    parse = deserializer.parse if isinstance(deserializer, Deferred) else deserializer
    if not handler.request_streaming:
        deserializer = Deferred(parse)
    codecs = {
        "request_deserializer": deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        behavior = _returning(handler.unary_unary, enter, parse=parse)
        return grpc.unary_unary_rpc_method_handler(behavior, **codecs)
    if handler.stream_unary is not None:
        behavior = _returning(handler.stream_unary, enter, parse=_STREAMED)
        return grpc.stream_unary_rpc_method_handler(behavior, **codecs)
    if handler.unary_stream is not None:
        behavior = _streaming(handler.unary_stream, enter, parse=parse)
        return grpc.unary_stream_rpc_method_handler(behavior, **codecs)
    behavior = _streaming(handler.stream_stream, enter, parse=_STREAMED)
    return grpc.stream_stream_rpc_method_handler(behavior, **codecs)


class _Streamed:
    """Marks a streamed request: grpc decodes each message as it is read."""


_STREAMED = _Streamed()


async def _checked(
    request: Any,
    context: grpc.aio.ServicerContext,
    enter: Enter | None,
    parse: Parse | _Streamed | None,
) -> tuple[AbstractContextManager[object], Any]:
    """``enter``'s scope and the request as the inner handler takes it."""
    if isinstance(parse, _Streamed):
        scope = _NO_SCOPE if enter is None else await enter(None, context)
        return scope, request
    if enter is None:
        # Nothing to run first: decode at once (bytes stay bytes).
        if parse is None or not isinstance(request, bytes):
            return _NO_SCOPE, request
        try:
            return _NO_SCOPE, codecs.parse_message(parse, request)
        except InvalidRequestError as exc:
            await status.abort(context, exc)
    body = RequestBody(request, parse)
    scope = await enter(body, context)
    try:
        return scope, body.message()
    except InvalidRequestError as exc:
        with scope:
            await status.abort(context, exc)


_NO_SCOPE: AbstractContextManager[None] = contextlib.nullcontext()
"""The scope of a call with no check to run: ``nullcontext`` is reentrant
and keeps no state, so one serves every call."""


def _returning(
    inner: Callable[..., Any], enter: Enter | None, *, parse: Parse | _Streamed | None
) -> Callable[..., Awaitable[Any]]:
    if inspect.iscoroutinefunction(inner):

        async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
            scope, request = await _checked(request, context, enter, parse)
            with scope:
                return await inner(request, context)

        return coroutine

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        scope, request = await _checked(request, context, enter, parse)
        with scope:
            result = inner(request, context)
            return await result if inspect.isawaitable(result) else result

    return behavior


def _streaming(
    inner: Callable[..., Any], enter: Enter | None, *, parse: Parse | _Streamed | None
) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(inner):
        # A handler that answers through context.write(): stay a coroutine.
        return _returning(inner, enter, parse=parse)

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        scope, request = await _checked(request, context, enter, parse)
        with scope:
            responses = inner(request, context)
            if hasattr(responses, "__aiter__"):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

    return behavior


def _in_turn(enters: Sequence[Enter]) -> Enter | None:
    """The checks ``enters`` as one: each runs inside the scopes of those
    before it (as nested interceptors would), and the call inside all."""
    if not enters:
        return None
    if len(enters) == 1:
        return enters[0]

    async def enter(
        request: RequestBody | None, context: grpc.aio.ServicerContext
    ) -> AbstractContextManager[object]:
        scopes = contextlib.ExitStack()
        try:
            for one in enters:
                scopes.enter_context(await one(request, context))
        except BaseException:
            scopes.close()
            raise
        return scopes

    return enter


_GUARDED_CACHE_SIZE = 1024
"""Most handlers a GuardInterceptor keeps wrapped: a server's handlers are
a fixed few (grpc hands back the same object for a method on every call),
so this is never reached but by handlers built per call."""


class GuardInterceptor:
    """Runs ``checks`` in order before each call, then has the handler
    decode its request (see the module's docstring). The checks of a port
    in one interceptor: grpc.aio runs each interceptor as a coroutine of
    its own on every call, and each wrapping is one more layer per call.

    Each (method, handler) is wrapped once, on its first call, not on
    every call. List it last, so that it wraps the handlers before other
    interceptors do and their checks run before any decoding.

    A ``grpc.aio.ServerInterceptor`` by registration, as the auth one is.
    """

    def __init__(self, checks: Sequence[Check] = ()) -> None:
        self._checks = tuple(checks)
        # By method and handler identity: handlers are named tuples of
        # functions, and the one wrapped is kept with its wrapping so that
        # the id is not reused.
        self._guarded: dict[
            tuple[str, int], tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]
        ] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        key = (handler_call_details.method, id(handler))
        found = self._guarded.get(key)
        if found is not None and found[0] is handler:
            return found[1]
        guarded = self.wrap(handler_call_details.method, handler)
        if len(self._guarded) >= _GUARDED_CACHE_SIZE:
            self._guarded.clear()
        self._guarded[key] = (handler, guarded)
        return guarded

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """``handler`` guarded by the checks that apply to ``method``."""
        found = (check.enter_for(method, handler) for check in self._checks)
        return _guarded(handler, _in_turn([enter for enter in found if enter is not None]))


grpc.aio.ServerInterceptor.register(GuardInterceptor)


class RequestDecodingInterceptor(GuardInterceptor):
    """A :class:`GuardInterceptor` with no checks of its own: has every
    handler of a server decode its request itself, after the checks of
    the interceptors listed before it."""

    def __init__(self) -> None:
        super().__init__()


grpc.aio.ServerInterceptor.register(RequestDecodingInterceptor)
