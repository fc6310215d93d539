"""The one place where domain errors become wire status codes, and back.

Servers call :func:`grpc_code` / :func:`http_status` at the edge, and send
:func:`wire_message` (every message safe to serialise and bounded in size);
clients of meshserve's own gRPC services (the instance talking to an out-of-process
runtime, or to another instance) call :func:`error_from_rpc` to get the same
exception type back. The exact type travels in the ``meshserve-error``
trailing metadata key, since several types share one gRPC code.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar, cast

import grpc
import grpc.aio

from meshserve import errors
from meshserve._log_limit import LimitedLog

__all__ = [
    "ERROR_TYPE_KEY",
    "MAX_MESSAGE_BYTES",
    "abort",
    "error_from_name",
    "error_from_rpc",
    "error_trailers",
    "grpc_code",
    "http_status",
    "reports_errors",
    "wire_message",
    "wire_text",
]

_log = LimitedLog(logging.getLogger(__name__))

MAX_MESSAGE_BYTES = errors.MAX_MESSAGE_BYTES
"""The most UTF-8 bytes of an error message sent to a caller. gRPC sends it
percent-encoded in a trailer, and clients refuse trailers over 8 KiB by
default (the call then fails with INTERNAL instead of the real status)."""

ERROR_TYPE_KEY = "meshserve-error"

# Most specific first: the first entry the error is an instance of wins.
_TABLE: tuple[tuple[type[errors.MeshServeError], grpc.StatusCode, int], ...] = (
    (errors.MessageTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    # Also InputRejectedError, an InferenceError the caller's input caused.
    (errors.InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.ModelNotFoundError, grpc.StatusCode.NOT_FOUND, 404),
    (errors.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS, 409),
    (errors.PreconditionFailedError, grpc.StatusCode.FAILED_PRECONDITION, 412),
    # Before LoadNotAttemptedError: a load refused by a quota is a quota
    # refusal first. 507 like ModelTooLargeError: no room for it.
    (errors.QuotaExceededError, grpc.StatusCode.RESOURCE_EXHAUSTED, 507),
    (errors.RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    # ModelMesh's SPI: a load refused before it started is FAILED_PRECONDITION
    # (or INVALID_ARGUMENT), so the caller knows no memory is held.
    (errors.UnsupportedModelError, grpc.StatusCode.INVALID_ARGUMENT, 422),
    (errors.LoadNotAttemptedError, grpc.StatusCode.FAILED_PRECONDITION, 422),
    (errors.ModelTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED, 507),
    (errors.LoadTimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (errors.ModelLoadError, grpc.StatusCode.INTERNAL, 500),
    (errors.InferenceError, grpc.StatusCode.INTERNAL, 500),
    (errors.UnavailableError, grpc.StatusCode.UNAVAILABLE, 503),
    (errors.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED, 401),
    (errors.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED, 403),
    (errors.MeshServeError, grpc.StatusCode.INTERNAL, 500),
)

_BY_NAME: dict[str, type[errors.MeshServeError]] = {
    cls.__name__: cls
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.MeshServeError)
}

# For peers that send no meshserve-error trailer (external runtimes).
_BY_CODE: dict[grpc.StatusCode, type[errors.MeshServeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: errors.ModelNotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.LoadNotAttemptedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.MessageTooLargeError,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.LoadTimeoutError,
    grpc.StatusCode.UNAVAILABLE: errors.UnavailableError,
    grpc.StatusCode.UNAUTHENTICATED: errors.UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDeniedError,
}


def _entry(exc: errors.MeshServeError) -> tuple[grpc.StatusCode, int]:
    for cls, code, status in _TABLE:
        if isinstance(exc, cls):
            return code, status
    raise AssertionError("MeshServeError is the last table entry")  # pragma: no cover


def grpc_code(exc: errors.MeshServeError) -> grpc.StatusCode:
    """The gRPC status code that reports ``exc``."""
    return _entry(exc)[0]


def http_status(exc: errors.MeshServeError) -> int:
    """The HTTP status code that reports ``exc``."""
    return _entry(exc)[1]


def wire_text(message: str) -> str:
    """``message`` as it may be sent (see :func:`meshserve.errors.bounded_message`)."""
    return errors.bounded_message(message)


def wire_message(exc: errors.MeshServeError) -> str:
    """The message that reports ``exc`` to a caller (see :func:`wire_text`)."""
    return wire_text(str(exc))


async def abort(context: grpc.aio.ServicerContext, exc: errors.MeshServeError) -> NoReturn:
    """End the call with the status, message and trailers that report ``exc``."""
    await context.abort(grpc_code(exc), wire_message(exc), trailing_metadata=error_trailers(exc))
    raise AssertionError("context.abort raises")  # pragma: no cover


def error_trailers(exc: errors.MeshServeError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata that lets a meshserve peer rebuild the exact type."""
    return ((ERROR_TYPE_KEY, type(exc).__name__),)


def error_from_name(name: str, message: str) -> errors.MeshServeError:
    """Rebuild a domain error from its type name (MeshServeError if unknown)."""
    return _BY_NAME.get(name, errors.MeshServeError).from_message(message)


def error_from_rpc(
    code: grpc.StatusCode,
    details: str | None,
    trailers: Sequence[tuple[str, str | bytes]] | None = None,
) -> errors.MeshServeError:
    """Rebuild the domain error a peer reported as a gRPC status."""
    cls: type[errors.MeshServeError] | None = None
    for key, value in trailers or ():
        if key == ERROR_TYPE_KEY:
            name = value.decode() if isinstance(value, bytes) else value
            cls = _BY_NAME.get(name)
    if cls is None:
        cls = _BY_CODE.get(code, errors.MeshServeError)
    return cls.from_message(details or code.name)


_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])


def reports_errors(method: _Method) -> _Method:
    """Decorate an async gRPC servicer method so that domain errors end the
    call with their mapped status (and unexpected ones with INTERNAL, logged
    at most once a minute per method), never with a traceback sent to the
    caller."""
    kind = f"grpc:{method.__qualname__}"

    @functools.wraps(method)
    async def wrapper(self: object, request: object, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except errors.MeshServeError as exc:
            await abort(context, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, grpc.aio.AbortError):
                raise
            _log.log(
                logging.ERROR, kind, "unexpected error in %s", method.__qualname__, exc_info=exc
            )
            await context.abort(grpc.StatusCode.INTERNAL, wire_text(f"internal error: {exc}"))

    return cast(_Method, wrapper)
