"""Read a ModelInferRequest's model name without decoding the message.

The router and the runtime server only need field 1 (``model_name``) to pick
a destination; decoding every tensor to learn it would cost as much as the
request itself. This walks the top-level fields, skipping each by its length.
"""

from __future__ import annotations

from meshserve.errors import InvalidRequestError

__all__ = ["peek_model_name"]


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise InvalidRequestError("malformed request: truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise InvalidRequestError("malformed request: varint too long")


def peek_model_name(body: bytes) -> str:
    """Field 1 of a serialized message, as text ("" when absent).

    Protobuf lets a field repeat and the last value win, so every top-level
    field is visited; each is skipped by its declared length.
    """
    data = memoryview(body)
    pos, end = 0, len(data)
    name = b""
    while pos < end:
        tag, pos = _varint(data, pos)
        field, wire_type = tag >> 3, tag & 7
        if wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise InvalidRequestError("malformed request: field runs past the end")
            if field == 1:
                name = bytes(data[pos : pos + length])
            pos += length
        elif wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise InvalidRequestError(f"malformed request: unsupported wire type {wire_type}")
    if pos > end:
        raise InvalidRequestError("malformed request: field runs past the end")
    try:
        return name.decode()
    except UnicodeDecodeError:
        raise InvalidRequestError("malformed request: model_name is not UTF-8") from None
