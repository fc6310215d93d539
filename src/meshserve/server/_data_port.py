"""The data port: forwarded inference from other instances, in frames.

The second internal port (``mesh.dataPort`` on ``mesh.internalHost``,
published in the instance record as ``data_address``). It serves one thing,
forwarded ModelInfer (``protocol.frames`` says the format), exactly as the
internal gRPC port serves it (:func:`~meshserve.protocol.service.forwarded_infer`),
and is guarded no less:

- with TLS, mutual TLS from the same files (a client certificate from the
  CA required), before any byte of a frame is read;
- then a HELLO frame within ``mesh.dataHandshakeTimeoutS`` carrying the
  mesh secret's token, compared in constant time; a connection without it
  is told REFUSED and closed, having read nothing else (the HELLO frame
  itself may be only a few bytes);
- every frame within the size limit (``server.grpcMaxMessageSizeBytes`` and
  a head), or the connection is closed.

A bad connection is closed with a warning (rate-limited: anyone who can
reach the port can cause one, and none quotes what was sent); the port keeps
serving the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl

import grpc

from meshserve._log_limit import LimitedLog
from meshserve.errors import MeshServeError, MessageTooLargeError
from meshserve.protocol import frames, status
from meshserve.protocol.frames import ErrorReply, Frame, FrameError, Kind
from meshserve.protocol.routing import Metadata
from meshserve.protocol.service import ForwardedInfer
from meshserve.security import DeniedHook, MeshSecret
from meshserve.server._ports import address, listening_socket

__all__ = ["DATA_PORT_METHOD", "DataPort"]

log = logging.getLogger(__name__)

DATA_PORT_METHOD = "data-port"
"""The method label of a refusal here (``meshserve_auth_denied``)."""

_REFUSAL = (
    "the data port serves only other instances of this mesh, and this connection "
    "did not present the mesh secret (mesh.secretFile)"
)
_HELLO_LIMIT = 1024
"""The most a frame may hold before the connection is authenticated."""
_UNEXPECTED = "grpc:data-port:ModelInfer"


class DataPort:
    """A listening socket, bound before the instance exists (its address
    goes into the instance record) and served once it does."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        secret: MeshSecret,
        max_message_bytes: int,
        handshake_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        on_denied: DeniedHook | None = None,
    ) -> None:
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.address = address(host, port)
        self._secret = secret
        self._max_message_bytes = max_message_bytes
        self._handshake_timeout_s = handshake_timeout_s
        self._ssl = ssl_context
        self._on_denied = on_denied
        self._log = LimitedLog(log)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._served: set[_Connection] = set()
        """The authenticated connections, whose forwards a stop lets finish."""
        self._infer: ForwardedInfer | None = None

    @classmethod
    def bind(
        cls,
        *,
        host: str,
        port: int,
        secret: MeshSecret,
        max_message_bytes: int,
        handshake_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
        on_denied: DeniedHook | None = None,
    ) -> DataPort:
        return cls(
            listening_socket(host, port, reuse_port=False),
            secret=secret,
            max_message_bytes=max_message_bytes,
            handshake_timeout_s=handshake_timeout_s,
            ssl_context=ssl_context,
            on_denied=on_denied,
        )

    async def start(self, infer: ForwardedInfer) -> None:
        """Serve forwards with ``infer``."""
        self._infer = infer
        self._server = await asyncio.start_server(
            self._connected,
            sock=self._sock,
            ssl=self._ssl,
            ssl_handshake_timeout=self._handshake_timeout_s if self._ssl else None,
        )

    async def stop(self, grace_s: float | None) -> None:
        """Accept no more; let forwards in flight finish for up to ``grace_s``
        (None: none), then close every connection. Safe to repeat."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        else:
            self._sock.close()
        answering = [task for served in self._served for task in served.answering()]
        if grace_s and answering:
            await asyncio.wait(answering, timeout=grace_s)
        connections = list(self._connections)
        for connection in connections:
            connection.cancel()
        if connections:
            await asyncio.wait(connections)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = _peer_of(writer)
        try:
            if await self._admitted(reader, writer, peer=peer) and self._infer is not None:
                connection = _Connection(
                    reader,
                    writer,
                    infer=self._infer,
                    max_message_bytes=self._max_message_bytes,
                    peer=peer,
                    log=self._log,
                )
                self._served.add(connection)
                try:
                    await connection.serve()
                finally:
                    self._served.discard(connection)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _admitted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, peer: str
    ) -> bool:
        """Whether the connection's HELLO presents the mesh secret (WELCOME
        sent); if not, REFUSED is sent when there was a HELLO to refuse."""
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                hello = await frames.read_frame(reader, max_bytes=_HELLO_LIMIT)
            if hello.kind is not Kind.HELLO:
                raise FrameError(f"a {hello.kind.name} frame before HELLO")
            token = frames.decode_hello(hello.head)
        except TimeoutError:
            problem = f"no HELLO within {self._handshake_timeout_s:g} s"
        except (FrameError, asyncio.IncompleteReadError, OSError, ssl.SSLError) as exc:
            problem = f"no valid HELLO ({_why(exc)})"
        else:
            if self._secret.admits(token):
                writer.write(frames.encode_frame(Frame(Kind.WELCOME))[0])
                return True
            problem = "a HELLO without the mesh secret"
            writer.write(frames.encode_frame(Frame(Kind.REFUSED, head=_REFUSAL.encode()))[0])
        if self._on_denied is not None:
            self._on_denied("unauthenticated", DATA_PORT_METHOD)
        self._log.log(
            logging.WARNING,
            "data-port:refused",
            "data port: refused a connection from %s: %s",
            peer,
            problem,
        )
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await writer.drain()
        return False


class _Connection:
    """One authenticated connection: a task per REQUEST, each answered with
    one REPLY unless the peer cancels it."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        infer: ForwardedInfer,
        max_message_bytes: int,
        peer: str,
        log: LimitedLog,
    ) -> None:
        """``log``: the port's, which writes a kind of line at most once a minute."""
        self._infer = infer
        self._log = log
        self._max_frame = frames.frame_limit(max_message_bytes)
        self._max_message_bytes = max_message_bytes
        self._reader = reader
        self._writer = writer
        self._peer = peer
        self._answering: dict[int, asyncio.Task[None]] = {}

    def answering(self) -> list[asyncio.Task[None]]:
        """The forwards in flight on this connection."""
        return list(self._answering.values())

    def _peer_name(self) -> str:
        return self._peer

    async def serve(self) -> None:
        try:
            while True:
                frame = await frames.read_frame(self._reader, max_bytes=self._max_frame)
                if frame.kind is Kind.REQUEST:
                    self._start(frame)
                elif frame.kind is Kind.CANCEL:
                    answering = self._answering.get(frame.request_id)
                    if answering is not None:
                        answering.cancel()
                else:
                    raise FrameError(f"a {frame.kind.name} frame on an open connection")
        except FrameError as exc:
            self._log.log(
                logging.WARNING,
                "data-port:bad-frame",
                "data port: closing the connection from %s: %s",
                self._peer,
                exc,
            )
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
            pass  # the peer closed it (it left, or it closes idle links)
        finally:
            for answering in self._answering.values():
                answering.cancel()
            if self._answering:
                await asyncio.wait(list(self._answering.values()))

    def _start(self, frame: Frame) -> None:
        if frame.request_id in self._answering:
            raise FrameError(f"request id {frame.request_id} is already in flight")
        timeout_s, metadata = frames.decode_request_head(frame.head)
        task = asyncio.create_task(
            self._answer(frame.request_id, frame.body, metadata, timeout_s=timeout_s)
        )
        self._answering[frame.request_id] = task
        task.add_done_callback(lambda _: self._answering.pop(frame.request_id, None))

    async def _answer(
        self,
        request_id: int,
        body: bytes,
        metadata: Metadata,
        *,
        timeout_s: float | None,
    ) -> None:
        try:
            reply = await self._infer(body, metadata, timeout_s=timeout_s, peer=self._peer_name)
            if len(reply) > self._max_message_bytes:
                raise MessageTooLargeError(
                    f"the response is {len(reply)} bytes, over the limit of "
                    f"{self._max_message_bytes} (server.grpcMaxMessageSizeBytes)"
                )
            frame = Frame(Kind.REPLY, request_id, body=reply)
        except MeshServeError as exc:
            frame = _error_frame(request_id, exc)
        except Exception as exc:
            self._log.log(logging.ERROR, _UNEXPECTED, "unexpected error in a forward", exc_info=exc)
            unexpected = ErrorReply(
                code=grpc.StatusCode.INTERNAL.value[0],
                type_name="",
                message=status.wire_text(f"internal error: {exc}"),
            )
            frame = Frame(Kind.REPLY, request_id, head=frames.encode_error(unexpected))
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            self._writer.writelines(frames.encode_frame(frame))
            await self._writer.drain()


def _error_frame(request_id: int, exc: MeshServeError) -> Frame:
    """The REPLY that reports ``exc`` as the gRPC status and trailer would."""
    reply = ErrorReply(
        code=status.grpc_code(exc).value[0],
        type_name=type(exc).__name__,
        message=status.wire_message(exc),
    )
    return Frame(Kind.REPLY, request_id, head=frames.encode_error(reply))


def _peer_of(writer: asyncio.StreamWriter) -> str:
    peername = writer.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return address(str(peername[0]), int(peername[1]))
    return "an unknown peer"


def _why(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection ended"
    return str(exc) or type(exc).__name__
