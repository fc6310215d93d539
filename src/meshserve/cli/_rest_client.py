"""What client commands that speak REST share: the base URL, and one
request whose failures become the exit codes of ``_client``."""

from __future__ import annotations

import http
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import TypeVar

import click
import orjson

from meshserve.cli._client import (
    CannotConnectError,
    ClientTls,
    ServerError,
    endpoints_file_entry,
    tls_hint,
)

__all__ = ["DEFAULT_REST_URL", "rest_base", "rest_request", "rest_url_option"]

DEFAULT_REST_URL = "http://127.0.0.1:8008"

_Command = TypeVar("_Command", bound=Callable[..., None])


def rest_url_option(*, note: str = "") -> Callable[[_Command], _Command]:
    """Add ``--rest-url`` (passed as ``rest_url``; env MESHSERVE_REST_URL);
    ``note`` goes first in its help."""
    return click.option(
        "--rest-url",
        envvar="MESHSERVE_REST_URL",
        default=None,
        metavar="URL",
        help=f"REST base URL{note} (env MESHSERVE_REST_URL)  [default: the 'rest' entry "
        f"of ./.meshserve/endpoints.json if it exists, else {DEFAULT_REST_URL}]",
    )


def rest_base(rest_url: str | None) -> str:
    """``rest_url``, or the default one (see :func:`rest_url_option`)."""
    return rest_url or endpoints_file_entry("rest") or DEFAULT_REST_URL


def rest_request(
    base: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str],
    timeout_s: float,
    tls: ClientTls | None,
) -> bytes:
    """The body of a reply to ``path`` (already quoted) under ``base``: a GET,
    or a POST of ``body``. An error reply is a ServerError ("HTTP 404
    NOT_FOUND: <message>"), no reply a CannotConnectError."""
    url = f"{base.rstrip('/')}{path}"
    request = urllib.request.Request(
        url, data=body, headers=dict(headers), method="GET" if body is None else "POST"
    )
    # The same files as the gRPC channel (--tls-ca/--tls-cert/--tls-key);
    # without them an https:// URL is checked against the system's CAs.
    context = tls.ssl_context() if tls is not None else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as answer:
            payload: bytes = answer.read()
    except urllib.error.HTTPError as exc:
        raise ServerError(f"HTTP {_status_name(exc.code)}: {_rest_error(exc.read())}") from None
    except urllib.error.URLError as exc:
        reason = str(exc.reason)
        raise CannotConnectError(base, reason + tls_hint(reason, tls=tls, url=url)) from None
    except TimeoutError:
        raise ServerError(f"DEADLINE_EXCEEDED: no answer within {timeout_s} s") from None
    except ConnectionError as exc:
        reason = str(exc)
        raise CannotConnectError(base, reason + tls_hint(reason, tls=tls, url=url)) from None
    return payload


def _status_name(code: int) -> str:
    """404 -> '404 NOT_FOUND'."""
    try:
        return f"{code} {http.HTTPStatus(code).name}"
    except ValueError:
        return str(code)


def _rest_error(payload: bytes) -> str:
    """The message of meshserve's ``{"error": message}`` body, else the body."""
    try:
        message = orjson.loads(payload).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        message = None
    return str(message) if message else payload.decode(errors="replace")
