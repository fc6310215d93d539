"""What the REST front reads from an HTTP request besides its URL: the body,
bounded by the message size limit, and ModelMesh's routing headers.

The body limit is the REST twin of gRPC's ``grpcMaxMessageSizeBytes``: a
declared Content-Length over it is refused before anything is stored, and a
chunked body is counted while it arrives. Either way the rest of an
oversized body is read and thrown away (up to ``DRAIN_LIMIT``) before the
413 goes out: a server that closes a socket with unread bytes in it resets
the connection, and the client then never sees the answer.

The body's bytes are also reserved in the instance's decode budget
(``_budget``) before they are kept; a body the budget has no room for is
drained the same way and answered 429.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable

from starlette.requests import Request

from meshserve.errors import (
    InvalidRequestError,
    MeshServeError,
    MessageTooLargeError,
    ServerBusyError,
    quote_client_value,
)
from meshserve.protocol.codecs import INFERENCE_HEADER_CONTENT_LENGTH
from meshserve.protocol.routing import (
    HEADER_FIELDS,
    NAMESPACE_HEADER,
    RoutingHeaders,
    namespace_name,
)
from meshserve.server._budget import Reservation

__all__ = ["DRAIN_LIMIT", "json_length", "read_body", "routing_headers"]

DRAIN_LIMIT = 64 * 1024 * 1024
"""Bytes of an oversized body read past the limit so the 413 reaches the
client; beyond this the connection is just closed (and the client may see a
reset instead of the 413)."""

# Header names as ASGI gives them (lowercase bytes) -> (field, base64-encoded?).
_ROUTING: dict[bytes, tuple[str, bool]] = {
    name.encode(): (field, name.endswith("-bin")) for name, field in HEADER_FIELDS.items()
}

_NAMESPACE = NAMESPACE_HEADER.encode()

# Content-Encoding -> zlib wbits (tritonclient compresses requests with these two).
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def routing_headers(
    raw_headers: Iterable[tuple[bytes, bytes]], *, path_namespace: str | None = None
) -> RoutingHeaders:
    """The routing headers among ASGI's raw headers, and the namespace the
    request selects (``path_namespace``, from the URL, or ``mm-namespace``).

    Values are UTF-8; ``-bin`` values are base64 of UTF-8 (as gRPC sends
    binary metadata), padded or not. Empty values count as absent. Raises
    InvalidRequestError for an undecodable value, or for two different ids
    given for the same field (say ``mm-model-id`` and ``mm-model-id-bin``),
    or for a namespace header and path that disagree.
    """
    found: dict[str, str] = {}
    if path_namespace is not None:
        found["namespace"] = namespace_name(path_namespace)
    for key, value in raw_headers:
        if key == _NAMESPACE and value:
            _select(found, "namespace", key, namespace_name(_header_text(key, value, is_bin=False)))
            continue
        entry = _ROUTING.get(key) if key[:3] == b"mm-" else None
        if entry is None or not value:
            continue
        field, is_bin = entry
        _select(found, field, key, _header_text(key, value, is_bin=is_bin))
    return RoutingHeaders(
        model_id=found.get("model_id"),
        vmodel_id=found.get("vmodel_id"),
        namespace=found.get("namespace"),
    )


def _select(found: dict[str, str], field: str, key: bytes, text: str) -> None:
    if found.setdefault(field, text) != text:
        raise InvalidRequestError(
            f"routing header {key.decode()} gives {quote_client_value(text)} but "
            f"{field.replace('_', ' ')} {quote_client_value(found[field])} was given too; "
            f"expected one {'namespace' if field == 'namespace' else 'id'}"
        )


def json_length(request: Request) -> int | None:
    """The Inference-Header-Content-Length header (None when absent)."""
    value = request.headers.get(INFERENCE_HEADER_CONTENT_LENGTH)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequestError(
            f"{INFERENCE_HEADER_CONTENT_LENGTH} is {quote_client_value(value)}; expected an integer"
        ) from None


async def read_body(
    request: Request, *, limit: int, reservation: Reservation | None = None
) -> bytes:
    """The request body, decompressed when it has a Content-Encoding.

    Raises MessageTooLargeError when the body (or what it decompresses to)
    is over ``limit`` bytes, InvalidRequestError for an unknown or broken
    encoding. With a ``reservation``, the body's bytes are reserved before
    they are kept (a declared Content-Length at once, a chunked body as it
    arrives, then what it decompresses to): ServerBusyError when the budget
    has no room.
    """
    headers = request.headers
    declared = headers.get("content-length")
    refusal: MeshServeError | None = None
    if declared is not None and declared.isdigit():
        if int(declared) > limit:
            refusal = _too_large(limit, f"declares {declared} bytes")
        elif reservation is not None:
            refusal = _reserve(reservation, int(declared))
    if refusal is not None and headers.get("expect", "").lower() == "100-continue":
        # The client waits for our go-ahead before sending; answering now
        # means the body never comes, so there is nothing to drain.
        raise refusal
    counted = reservation is not None and (declared is None or not declared.isdigit())
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if refusal is None and size > limit:
            refusal = _too_large(limit, f"is over {limit} bytes")
        elif refusal is None and counted and reservation is not None:
            refusal = _reserve(reservation, len(chunk))
        if refusal is None:
            chunks.append(chunk)
            continue
        chunks.clear()
        if size > limit + DRAIN_LIMIT:
            break
    if refusal is not None:
        raise refusal
    body = b"".join(chunks)
    encoding = headers.get("content-encoding")
    if encoding and encoding.lower() != "identity":
        body = _decompress(body, encoding.lower(), limit=limit)
        if reservation is not None:
            reservation.grow(len(body))
    return body


def _reserve(reservation: Reservation, size: int) -> ServerBusyError | None:
    try:
        reservation.grow(size)
    except ServerBusyError as exc:
        return exc
    return None


def _too_large(limit: int, measured: str) -> MessageTooLargeError:
    return MessageTooLargeError(
        f"request body {measured}; the limit is {limit} bytes (max_message_bytes)"
    )


def _decompress(body: bytes, encoding: str, *, limit: int) -> bytes:
    wbits = _ENCODINGS.get(encoding)
    if wbits is None:
        raise InvalidRequestError(
            f"Content-Encoding {quote_client_value(encoding)} is not supported; "
            "expected gzip, deflate or identity"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        # One more byte than allowed tells "exactly at the limit" from "over".
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequestError(f"request body is not valid {encoding} data: {exc}") from None
    if len(out) > limit:
        raise _too_large(limit, f"decompresses to more than {limit} bytes")
    if not inflater.eof:
        raise InvalidRequestError(f"request body is truncated {encoding} data")
    return out


def _header_text(key: bytes, value: bytes, *, is_bin: bool) -> str:
    try:
        raw = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True) if is_bin else value
        return raw.decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        encoding = "base64 of UTF-8" if is_bin else "UTF-8"
        raise InvalidRequestError(
            f"routing header {key.decode()} is not {encoding}: {exc}"
        ) from None
