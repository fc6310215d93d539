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
        self._guard = _Guard(
            secret=secret,
            max_message_bytes=max_message_bytes,
            handshake_timeout_s=handshake_timeout_s,
            on_denied=on_denied,
        )
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

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
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self._guard, infer, connections=self._connections),
            sock=self._sock,
            ssl=self._ssl,
            ssl_handshake_timeout=self._guard.handshake_timeout_s if self._ssl else None,
        )

    async def stop(self, grace_s: float | None) -> None:
        """Accept no more; let forwards in flight finish for up to ``grace_s``
        (None: none), then close every connection. Safe to repeat."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        else:
            self._sock.close()
        answering = [task for connection in self._connections for task in connection.answering()]
        if grace_s and answering:
            await asyncio.wait(answering, timeout=grace_s)
        connections = list(self._connections)
        self._connections.clear()
        for connection in connections:
            connection.close()
        left = [task for connection in connections for task in connection.stop_answering()]
        if left:
            await asyncio.wait(left)


class _Guard:
    """What every connection of one port checks and reports: the mesh
    secret, the limits, and the port's log lines (each kind at most once a
    minute: anyone who can reach the port can cause them)."""

    def __init__(
        self,
        *,
        secret: MeshSecret,
        max_message_bytes: int,
        handshake_timeout_s: float,
        on_denied: DeniedHook | None,
    ) -> None:
        self.secret = secret
        self.max_message_bytes = max_message_bytes
        self.handshake_timeout_s = handshake_timeout_s
        self._on_denied = on_denied
        self._log = LimitedLog(log)

    def refused(self, peer: str, problem: str) -> None:
        """A connection closed before it presented the mesh secret."""
        if self._on_denied is not None:
            self._on_denied("unauthenticated", DATA_PORT_METHOD)
        self._log.log(
            logging.WARNING,
            "data-port:refused",
            "data port: refused a connection from %s: %s",
            peer,
            problem,
        )

    def bad_frame(self, peer: str, exc: FrameError) -> None:
        """An authenticated connection closed for a frame that breaks the format."""
        self._log.log(
            logging.WARNING,
            "data-port:bad-frame",
            "data port: closing the connection from %s: %s",
            peer,
            exc,
        )

    def unexpected(self, exc: Exception) -> None:
        self._log.log(logging.ERROR, _UNEXPECTED, "unexpected error in a forward", exc_info=exc)


class _Connection(frames.FrameProtocol):
    """One connection: a HELLO with the mesh secret first (within the
    handshake timeout), then a task per REQUEST, each answered with one
    REPLY unless the peer cancels it."""

    def __init__(
        self, guard: _Guard, infer: ForwardedInfer, *, connections: set[_Connection]
    ) -> None:
        """``connections``: the port's open connections, this one among them while open."""
        super().__init__(max_bytes=_HELLO_LIMIT)
        self._guard = guard
        self._infer = infer
        self._connections = connections
        self._peer = "an unknown peer"
        self._admitted = False
        self._handshake: asyncio.TimerHandle | None = None
        self._answering: dict[int, asyncio.Task[None]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._peer = _peer_of(transport)
        self._connections.add(self)
        self._handshake = asyncio.get_running_loop().call_later(
            self._guard.handshake_timeout_s, self._no_hello
        )

    def _no_hello(self) -> None:
        if not self._admitted:
            timeout_s = self._guard.handshake_timeout_s
            self._guard.refused(self._peer, f"no HELLO within {timeout_s:g} s")
            self.close()

    def frame_received(self, frame: Frame) -> None:
        if not self._admitted:
            self._hello(frame)
        elif frame.kind is Kind.REQUEST:
            self._start(frame)
        elif frame.kind is Kind.CANCEL:
            answering = self._answering.get(frame.request_id)
            if answering is not None:
                answering.cancel()
        else:
            raise FrameError(f"a {frame.kind.name} frame on an open connection")

    def _hello(self, frame: Frame) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
        if frame.kind is not Kind.HELLO:
            raise FrameError(f"a {frame.kind.name} frame before HELLO")
        if self._guard.secret.admits(frames.decode_hello(frame.head)):
            self._admitted = True
            self.frames.max_bytes = frames.frame_limit(self._guard.max_message_bytes)
            self.send(Frame(Kind.WELCOME))
            return
        self.send(Frame(Kind.REFUSED, head=_REFUSAL.encode()))
        self._guard.refused(self._peer, "a HELLO without the mesh secret")
        self.close()

    def bad_frame(self, exc: FrameError) -> None:
        if self._admitted:
            self._guard.bad_frame(self._peer, exc)
        else:
            self._guard.refused(self._peer, f"no valid HELLO ({exc})")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._handshake is not None:
            self._handshake.cancel()
        if not self._admitted and exc is not None:
            # A TLS handshake or the connection failed before any HELLO.
            self._guard.refused(self._peer, f"no valid HELLO ({exc})")
        self._connections.discard(self)
        self.stop_answering()

    def answering(self) -> list[asyncio.Task[None]]:
        """The forwards in flight on this connection."""
        return list(self._answering.values())

    def stop_answering(self) -> list[asyncio.Task[None]]:
        """Cancel the forwards in flight (the connection is gone); them."""
        tasks = self.answering()
        for task in tasks:
            task.cancel()
        return tasks

    def _peer_name(self) -> str:
        return self._peer

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
        limit = self._guard.max_message_bytes
        try:
            reply = await self._infer(body, metadata, timeout_s=timeout_s, peer=self._peer_name)
            if len(reply) > limit:
                raise MessageTooLargeError(
                    f"the response is {len(reply)} bytes, over the limit of "
                    f"{limit} (server.grpcMaxMessageSizeBytes)"
                )
            frame = Frame(Kind.REPLY, request_id, body=reply)
        except MeshServeError as exc:
            frame = _error_frame(request_id, exc)
        except Exception as exc:
            self._guard.unexpected(exc)
            unexpected = ErrorReply(
                code=grpc.StatusCode.INTERNAL.value[0],
                type_name="",
                message=status.wire_text(f"internal error: {exc}"),
            )
            frame = Frame(Kind.REPLY, request_id, head=frames.encode_error(unexpected))
        self.send(frame)
        await self.drain()


def _error_frame(request_id: int, exc: MeshServeError) -> Frame:
    """The REPLY that reports ``exc`` as the gRPC status and trailer would."""
    reply = ErrorReply(
        code=status.grpc_code(exc).value[0],
        type_name=type(exc).__name__,
        message=status.wire_message(exc),
    )
    return Frame(Kind.REPLY, request_id, head=frames.encode_error(reply))


def _peer_of(transport: asyncio.BaseTransport) -> str:
    peername = transport.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return address(str(peername[0]), int(peername[1]))
    return "an unknown peer"
