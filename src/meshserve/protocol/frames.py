"""The data port's wire format: length-prefixed frames over one connection.

A forward over gRPC costs a second grpc.aio call on both instances (~0.6 ms
here); the data port carries the same forward (the request's bytes as the
client sent them, its call metadata, the reply's bytes or error) in a frame
on a long-lived connection per peer, so a hop costs little more than a
socket write and read on each side.

Every frame is::

    u32 length of the rest | u8 kind | u32 request id | u32 head length | head | body

big-endian. The ``head`` holds what a kind needs (the mesh token, the
timeout and call metadata, a reply's status); the ``body`` is a serialized
message, passed on as it came (a frame that arrived in one piece is sliced
once out of the socket's read). A connection opens with HELLO (the mesh
secret's token) answered by WELCOME or REFUSED, and sends nothing else
before that answer; then the client sends REQUEST and CANCEL frames under
ids of its choosing and the server answers each REQUEST with one REPLY
(none when cancelled). Anything else, or a frame over the size limit, is a
:class:`FrameError`: the connection is closed.

The runtime's data link (``runtime/_link.py``) is a simpler format for a
simpler link: a trusted Unix socket, one request in flight per connection,
no handshake.
"""

from __future__ import annotations

import asyncio
import enum
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from meshserve.protocol.routing import Metadata

__all__ = [
    "HEAD_LIMIT_BYTES",
    "VERSION",
    "ErrorReply",
    "Frame",
    "FrameBuffer",
    "FrameError",
    "FrameProtocol",
    "Kind",
    "decode_error",
    "decode_hello",
    "decode_request_head",
    "encode_error",
    "encode_frame",
    "encode_hello",
    "encode_request_head",
    "frame_limit",
]

VERSION = 1
"""The format's version, sent in HELLO: a server refuses others."""

HEAD_LIMIT_BYTES = 64 * 1024
"""The most bytes of a frame's head (call metadata, an error message): like
gRPC's own limit on metadata, apart from the message size limit."""

_PREFIX = struct.Struct("!IBII")
"""length of the rest, kind, request id, head length."""
_AFTER_LENGTH = _PREFIX.size - 4
_REQUEST = struct.Struct("!dH")
"""timeout in seconds (NaN: none), metadata entries."""
_ENTRY = struct.Struct("!BHI")
"""value is bytes (1) or text (0), key length, value length."""
_ERROR = struct.Struct("!HH")
"""gRPC status code, error type name length."""


class FrameError(ValueError):
    """A frame that breaks the format: the connection it came on is closed."""


class Kind(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    REFUSED = 3
    REQUEST = 4
    CANCEL = 5
    REPLY = 6


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    request_id: int = 0
    head: bytes = b""
    body: bytes = b""


def frame_limit(max_message_bytes: int) -> int:
    """The largest frame (after its length) a connection accepts: a message
    of ``max_message_bytes`` (``server.grpcMaxMessageSizeBytes``) and a
    head."""
    return _AFTER_LENGTH + HEAD_LIMIT_BYTES + max_message_bytes


def encode_frame(frame: Frame) -> tuple[bytes, ...]:
    """The frame's bytes, in parts (for ``StreamWriter.writelines``: the body
    is not copied into a new buffer here)."""
    rest = _AFTER_LENGTH + len(frame.head) + len(frame.body)
    prefix = _PREFIX.pack(rest, frame.kind, frame.request_id, len(frame.head))
    if frame.body:
        return (prefix, frame.head, frame.body)
    return (prefix + frame.head,)


class FrameBuffer:
    """Frames out of a byte stream as its pieces arrive (an asyncio
    protocol's ``data_received``): whole frames come out, the rest waits.

    Each frame is judged by its prefix as soon as that is in (size, kind,
    head length): a frame over ``max_bytes`` is a FrameError before any of
    it is kept."""

    __slots__ = ("_buffer", "max_bytes")

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        """The largest frame (after its length) accepted; may be raised
        between two ``feed`` calls (once a connection is authenticated)."""
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """The frames ``data`` completes (none, one or several)."""
        if not self._buffer:
            # The common case, a whole frame in one piece: sliced straight
            # out of ``data``.
            found, used = self._parse(data)
            if used < len(data):
                self._buffer += data[used:]
            return found
        self._buffer += data
        found, used = self._parse(self._buffer)
        del self._buffer[:used]
        return found

    def _parse(self, source: bytes | bytearray) -> tuple[list[Frame], int]:
        found = []
        pos, end_of_data = 0, len(source)
        while end_of_data - pos >= _PREFIX.size:
            rest, kind, request_id, head_length = _PREFIX.unpack_from(source, pos)
            known = _checked(rest, kind, head_length, max_bytes=self.max_bytes)
            end = pos + 4 + rest
            if end > end_of_data:
                break
            head_end = pos + _PREFIX.size + head_length
            found.append(
                Frame(
                    known,
                    request_id,
                    bytes(source[pos + _PREFIX.size : head_end]),
                    bytes(source[head_end:end]),
                )
            )
            pos = end
        return found, pos


def _checked(rest: int, kind: int, head_length: int, *, max_bytes: int) -> Kind:
    """The kind of a frame whose prefix says this; FrameError if it is not one."""
    if rest > max_bytes:
        raise FrameError(f"a frame of {rest} bytes is over the limit of {max_bytes}")
    if rest < _AFTER_LENGTH or head_length > rest - _AFTER_LENGTH:
        raise FrameError(f"a frame of {rest} bytes cannot hold a head of {head_length}")
    if head_length > HEAD_LIMIT_BYTES:
        raise FrameError(f"a frame head of {head_length} bytes is over {HEAD_LIMIT_BYTES}")
    try:
        return Kind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind}") from None


class FrameProtocol(asyncio.Protocol):
    """An asyncio protocol that speaks frames, for both ends of a data-port
    connection: each frame goes to :meth:`frame_received` as soon as its
    last byte arrives (no reader task between the socket and the caller),
    :meth:`send` writes one, :meth:`drain` waits while the transport's
    buffer is full. A FrameError (from the buffer or from
    :meth:`frame_received`) goes to :meth:`bad_frame` and closes the
    connection."""

    def __init__(self, *, max_bytes: int) -> None:
        self.frames = FrameBuffer(max_bytes=max_bytes)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._paused = False
        self._drained: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, though not always an asyncio.Transport
        # subclass (uvloop's are its own classes).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            for frame in self.frames.feed(data):
                if self.closed:
                    return
                self.frame_received(frame)
        except FrameError as exc:
            self.bad_frame(exc)
            self.close()

    def frame_received(self, frame: Frame) -> None:
        raise NotImplementedError

    def bad_frame(self, exc: FrameError) -> None:
        """The connection is about to close for ``exc``."""

    def send(self, frame: Frame) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(b"".join(encode_frame(frame)))

    async def drain(self) -> None:
        """Return once the transport takes more (at once unless it is full)."""
        if self._paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# -- heads ---------------------------------------------------------------------


def encode_hello(token: str) -> bytes:
    return bytes((VERSION,)) + token.encode()


def decode_hello(head: bytes) -> bytes:
    """The token a HELLO presents. FrameError for another version."""
    if not head or head[0] != VERSION:
        raise FrameError("not a HELLO of this version of the data port")
    return head[1:]


def encode_request_head(timeout_s: float | None, metadata: Metadata) -> bytes:
    """A REQUEST's head: its deadline (seconds) and its call metadata."""
    parts = [_REQUEST.pack(math.nan if timeout_s is None else timeout_s, len(metadata))]
    for key, value in metadata:
        raw_key = key.encode()
        raw = value if isinstance(value, bytes) else value.encode()
        parts += (_ENTRY.pack(isinstance(value, bytes), len(raw_key), len(raw)), raw_key, raw)
    return b"".join(parts)


def decode_request_head(head: bytes) -> tuple[float | None, Sequence[tuple[str, str | bytes]]]:
    """(timeout in seconds or None, call metadata). FrameError if malformed."""
    try:
        timeout_s, count = _REQUEST.unpack_from(head)
        pos = _REQUEST.size
        metadata: list[tuple[str, str | bytes]] = []
        for _ in range(count):
            is_bytes, key_length, value_length = _ENTRY.unpack_from(head, pos)
            pos += _ENTRY.size
            key = head[pos : pos + key_length].decode()
            pos += key_length
            value = head[pos : pos + value_length]
            pos += value_length
            if pos > len(head):
                raise FrameError("a REQUEST head ends inside its metadata")
            metadata.append((key, value if is_bytes else value.decode()))
    except (struct.error, UnicodeDecodeError) as exc:
        raise FrameError(f"a malformed REQUEST head ({exc})") from None
    if pos != len(head):
        raise FrameError("a REQUEST head has bytes after its metadata")
    if math.isnan(timeout_s):
        return None, metadata
    if not timeout_s >= 0 or math.isinf(timeout_s):
        raise FrameError("a REQUEST head with a negative or infinite timeout")
    return timeout_s, metadata


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A REPLY that is an error: what a gRPC status and trailers would say."""

    code: int
    """The gRPC status code's number (never 0, OK)."""
    type_name: str
    """The meshserve error type ("" when none: an unexpected error)."""
    message: str


def encode_error(reply: ErrorReply) -> bytes:
    name = reply.type_name.encode()
    return _ERROR.pack(reply.code, len(name)) + name + reply.message.encode()


def decode_error(head: bytes) -> ErrorReply | None:
    """The error a REPLY's head reports (None: an empty head, success).
    FrameError if malformed."""
    if not head:
        return None
    try:
        code, name_length = _ERROR.unpack_from(head)
        end = _ERROR.size + name_length
        if end > len(head) or code == 0:
            raise FrameError("a malformed REPLY head")
        return ErrorReply(
            code=code,
            type_name=head[_ERROR.size : end].decode(),
            message=head[end:].decode(),
        )
    except (struct.error, UnicodeDecodeError) as exc:
        raise FrameError(f"a malformed REPLY head ({exc})") from None
