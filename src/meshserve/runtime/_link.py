"""The data link between an instance and its out-of-process runtime.

ModelInfer bodies cross a second Unix socket beside the SPI's gRPC one, in
length-prefixed frames: a gRPC call costs ~0.6 ms of Python on each side
here, a frame on a warm connection ~0.08 ms, and the link exists only to
move opaque bytes between two processes of the same installation. Management
calls (loadModel, ...) stay on gRPC, where ModelMesh's SPI defines them.

Request:  u32 length of the rest | u16 model id length | model id
          | u8 trace context length | trace context | body
          the trace context is the instance's W3C ``traceparent`` (empty
          when tracing is off), so the runtime's span joins the request's trace
Response: u32 length of the rest | u8 status | payload
          status 0: payload is the serialized ModelInferResponse
          status 1: payload is u16 type-name length | type name | message

One request is in flight per connection; the client keeps a pool of warm
connections and opens another when all are busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import struct
from collections.abc import Awaitable, Callable

from meshserve.errors import MeshServeError, UnavailableError
from meshserve.protocol.status import error_from_name
from meshserve.tracing import names as trace
from meshserve.tracing import server_span, traceparent

__all__ = ["LinkClient", "LinkServer", "link_path"]

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("<I")
_SHORT = struct.Struct("<H")
_BYTE = struct.Struct("<B")
_OK, _ERROR = 0, 1

Handler = Callable[[str, bytes], Awaitable[bytes]]


def link_path(socket_path: pathlib.Path) -> pathlib.Path:
    """Where the data link listens, beside the SPI socket."""
    return socket_path.with_name(socket_path.stem + ".data" + socket_path.suffix)


def _frame(*parts: bytes) -> bytes:
    return _LENGTH.pack(sum(len(p) for p in parts)) + b"".join(parts)


def _error_payload(exc: MeshServeError) -> bytes:
    name = type(exc).__name__.encode()
    return bytes([_ERROR]) + _SHORT.pack(len(name)) + name + str(exc).encode()


class LinkServer:
    """Serves frames on a Unix socket (mode 0600) by calling ``handler``."""

    def __init__(self, *, path: pathlib.Path, handler: Handler) -> None:
        self._path = path
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._path.unlink(missing_ok=True)
        previous = os.umask(0o177)  # never visible with looser permissions
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self._path))
        finally:
            os.umask(previous)
        os.chmod(self._path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self._path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                try:
                    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                    frame = await reader.readexactly(length)
                except asyncio.IncompleteReadError:
                    return  # the instance closed this connection
                (id_length,) = _SHORT.unpack_from(frame)
                start = _SHORT.size + id_length
                model_id = frame[_SHORT.size : start].decode()
                context_length = frame[start]
                context = frame[start + 1 : start + 1 + context_length].decode("ascii", "replace")
                body = frame[start + 1 + context_length :]
                try:
                    with server_span(
                        trace.RUNTIME_INFER,
                        carrier={"traceparent": context} if context else {},
                        attributes={trace.MODEL_ID: model_id},
                    ):
                        payload = bytes([_OK]) + await self._handler(model_id, body)
                except MeshServeError as exc:
                    payload = _error_payload(exc)
                except Exception as exc:
                    log.exception("inference over the data link failed")
                    payload = _error_payload(MeshServeError(f"internal error: {exc}"))
                writer.write(_frame(payload))
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()


class LinkClient:
    """The instance's side: a pool of warm connections to one runtime."""

    def __init__(self, *, path: pathlib.Path, max_idle: int = 64) -> None:
        self._path = path
        self._max_idle = max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def call(self, model_id: str, body: bytes) -> bytes:
        """Send one request; returns the response body or raises its error."""
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            try:
                reader, writer = await asyncio.open_unix_connection(str(self._path))
            except OSError as exc:
                raise UnavailableError(f"runtime data link unreachable: {exc}") from None
        try:
            name = model_id.encode()
            context = traceparent().encode()[:255]
            writer.write(
                _frame(_SHORT.pack(len(name)), name, _BYTE.pack(len(context)), context, body)
            )
            await writer.drain()
            (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
            frame = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError) as exc:
            writer.close()
            raise UnavailableError(f"runtime data link broke: {exc!r}") from None
        except BaseException:
            # Cancelled mid-request: the reply would arrive out of step.
            writer.close()
            raise
        if len(self._idle) < self._max_idle:
            self._idle.append((reader, writer))
        else:
            writer.close()
        if frame[0] == _OK:
            return frame[1:]
        (name_length,) = _SHORT.unpack_from(frame, 1)
        start = 1 + _SHORT.size
        type_name = frame[start : start + name_length].decode()
        raise error_from_name(type_name, frame[start + name_length :].decode())

    def close(self) -> None:
        """Drop every idle connection (the runtime went away)."""
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()
