"""How the REST front reports failures: always JSON ``{"error": message}``.

Domain errors get the status ``meshserve.protocol.status.http_status`` maps
their type to (the one place that mapping lives); routing failures (no such
route, wrong method) keep Starlette's 404 / 405; anything unexpected is a
500 whose traceback is logged here (at most once a minute) and never sent.
Every message goes out through ``status.wire_text``, so that one naming a
client's unencodable value (a lone surrogate) can still be serialised.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from meshserve import errors
from meshserve._log_limit import LimitedLog
from meshserve.protocol import status

__all__ = [
    "Endpoint",
    "error_response",
    "json_response",
    "reports_errors",
    "route_error",
    "unexpected_error",
]

_log = logging.getLogger("meshserve.server.rest")
_limited = LimitedLog(_log)

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(
    content: Any, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A response whose body is ``content`` serialised by orjson."""
    return Response(
        orjson.dumps(content),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def error_response(
    status_code: int, message: str, *, headers: Mapping[str, str] | None = None
) -> Response:
    """The body every REST error has."""
    return json_response(
        {"error": status.wire_text(message)}, status_code=status_code, headers=headers
    )


def reports_errors(endpoint: Endpoint) -> Endpoint:
    """Wrap an endpoint so that whatever it raises becomes a JSON error.

    Done per endpoint rather than with Starlette's ``Exception`` handler,
    which re-raises after answering (so the ASGI server logs every 500 twice).
    """

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except errors.MeshServeError as exc:
            return error_response(status.http_status(exc), str(exc))
        except ClientDisconnect:
            # Nobody is left to read an answer; the server drops it.
            _log.debug("client left during %s %s", request.method, request.url.path)
            return error_response(400, "client disconnected")
        except Exception as exc:
            return _internal(request, exc)

    return wrapper


async def route_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for HTTPException: no route (404), wrong method
    (405, with its Allow header), a redirect-less slash mismatch..."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException
        return _internal(request, exc)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        message = f"no route for {where}"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"method not allowed: {where} (allowed: {allowed})"
    else:
        message = f"{exc.detail}: {where}"
    return error_response(exc.status_code, message, headers=exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Last resort for an exception raised outside any endpoint."""
    return _internal(request, exc)


def _internal(request: Request, exc: Exception) -> Response:
    # The path is the client's: logged bounded, and the kind is the method.
    path = errors.quote_client_value(request.url.path)
    _limited.log(
        logging.ERROR,
        f"rest:{request.method}",
        "unexpected error in %s %s",
        request.method,
        path,
        exc_info=exc,
    )
    return error_response(500, f"internal error: {exc}")
