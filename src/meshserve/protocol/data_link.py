"""The client side of the data port: forwarded inference over frames.

One connection per peer's data address, opened by the first forward to it
(HELLO with the mesh secret's token, over mutual TLS when TLS is on) and
kept: concurrent forwards share it under request ids, and one that fails
(the peer went, a malformed frame) fails the forwards in flight on it with
PeerUnreachableError, the router's cue to try elsewhere; the next forward
opens a new one. A forward cancelled here (its hop deadline, its peer's
lease gone, the client gone) tells the peer with a CANCEL frame, as a gRPC
call's cancellation would. A peer's error comes back as the exception type
the gRPC path raises (the REPLY carries the status code, the error type and
the message).

A data port that cannot be reached at all (refused, filtered, no answer to
HELLO: nothing of the request was sent) raises :class:`DataPortUnreachable`
and is skipped for ``retry_s``: the caller forwards over gRPC meanwhile, so a
network policy that does not open the data port yet costs speed, not
requests. A peer that refuses the mesh secret is no such case: its internal
port would refuse it too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl

import grpc

from meshserve.errors import MeshServeError, PeerTimeoutError, PeerUnreachableError
from meshserve.protocol import frames
from meshserve.protocol._peer_errors import peer_error, refused_secret
from meshserve.protocol.frames import Frame, FrameError, Kind
from meshserve.protocol.routing import Metadata
from meshserve.protocol.status import ERROR_TYPE_KEY

__all__ = ["DataLinks", "DataPortUnreachable"]

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class DataPortUnreachable(PeerUnreachableError):
    """No connection to a peer's data port could be opened: nothing was
    sent, so the forward may go another way (gRPC)."""


class DataLinks:
    """Connections to other instances' data ports, one per address."""

    def __init__(
        self,
        *,
        max_message_bytes: int,
        timeout_s: float,
        mesh_token: str,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout_s: float = 5.0,
        retry_s: float = 5.0,
    ) -> None:
        """``timeout_s``: a forward's deadline when the caller gives none;
        ``handshake_timeout_s``: the most a new connection may take to be
        accepted (TCP, TLS and HELLO); ``retry_s``: how long a data port that
        could not be reached is skipped (``mesh.peerRetryS``)."""
        self._max_frame = frames.frame_limit(max_message_bytes)
        self._timeout_s = timeout_s
        self._hello = Frame(Kind.HELLO, head=frames.encode_hello(mesh_token))
        self._ssl = ssl_context
        self._handshake_timeout_s = handshake_timeout_s
        self._links: dict[str, _Link] = {}
        self._opening: dict[str, asyncio.Task[_Link]] = {}
        self._retry_s = retry_s
        self._unreachable: dict[str, float] = {}
        """Data address -> the loop's time until which it is skipped."""

    def usable(self, address: str) -> bool:
        """Whether to try the data port at ``address`` (False: it could not
        be reached lately; use gRPC)."""
        until = self._unreachable.get(address)
        if until is None:
            return True
        if asyncio.get_running_loop().time() < until:
            return False
        del self._unreachable[address]
        return True

    async def infer(
        self, address: str, body: bytes, metadata: Metadata, *, timeout_s: float | None = None
    ) -> bytes:
        """Forward a serialized ModelInferRequest to the data port at
        ``address``; the serialized response."""
        timeout = timeout_s or self._timeout_s
        try:
            async with asyncio.timeout(timeout):
                link = await self._link(address)
                reply = await link.call(body, metadata, timeout_s=timeout)
        except TimeoutError:
            raise PeerTimeoutError(f"instance at {address} did not answer in time") from None
        error = frames.decode_error(reply.head)
        if error is None:
            return reply.body
        trailers = ((ERROR_TYPE_KEY, error.type_name),) if error.type_name else ()
        raise peer_error(
            address, _CODES.get(error.code, grpc.StatusCode.UNKNOWN), error.message, trailers
        )

    async def _link(self, address: str) -> _Link:
        link = self._links.get(address)
        if link is not None and link.open:
            return link
        opening = self._opening.get(address)
        if opening is None:
            opening = asyncio.create_task(self._open(address), name=f"data-link:{address}")
            self._opening[address] = opening
            opening.add_done_callback(functools.partial(self._opened, address))
        # Shielded: one forward giving up does not cut the connection others wait for.
        return await asyncio.shield(opening)

    def _opened(self, address: str, task: asyncio.Task[_Link]) -> None:
        self._opening.pop(address, None)
        if not task.cancelled():
            task.exception()  # retrieved: every forward waiting on it got it already

    async def _open(self, address: str) -> _Link:
        try:
            return await self._connect(address)
        except DataPortUnreachable as exc:
            loop = asyncio.get_running_loop()
            self._unreachable[address] = loop.time() + self._retry_s
            log.warning("%s; forwarding to it over gRPC for %g s", exc, self._retry_s)
            raise

    async def _connect(self, address: str) -> _Link:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        loop = asyncio.get_running_loop()
        link: _Link | None = None
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                _, link = await loop.create_connection(
                    lambda: _Link(address, max_frame=self._max_frame),
                    host,
                    int(port),
                    ssl=self._ssl,
                    server_hostname=host if self._ssl is not None else None,
                )
                link.send(self._hello)
                answer = await link.welcome
        except TimeoutError:
            if link is not None:
                link.close()
            raise DataPortUnreachable(
                f"instance at {address} did not accept a data connection within "
                f"{self._handshake_timeout_s:g} s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise DataPortUnreachable(
                f"instance at {address} did not answer on its data port ({exc})"
            ) from None
        except BaseException:
            if link is not None:
                link.close()
            raise
        if answer.kind is not Kind.WELCOME:
            link.close()
            if answer.kind is Kind.REFUSED:
                raise refused_secret(address)
            raise PeerUnreachableError(
                f"instance at {address} answered a data connection with {answer.kind.name}"
            )
        old = self._links.get(address)
        self._links[address] = link
        if old is not None:
            old.close()
        log.info("data link to %s open", address)
        return link

    async def close(self) -> None:
        for opening in list(self._opening.values()):
            opening.cancel()
        links, self._links = self._links, {}
        for link in links.values():
            link.close()


class _Link(frames.FrameProtocol):
    """One connection: the forwards in flight on it by request id, each
    woken by its REPLY as soon as that arrives."""

    def __init__(self, address: str, *, max_frame: int) -> None:
        # Until WELCOME, only a short answer is expected.
        super().__init__(max_bytes=frames.HEAD_LIMIT_BYTES + 16)
        self._address = address
        self._max_frame = max_frame
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._next_id = 0
        self._why = "closed the connection"
        self.welcome: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        """The answer to HELLO (WELCOME or REFUSED)."""
        # Whoever opened the link may have given up on it already.
        self.welcome.add_done_callback(_retrieved)

    @property
    def open(self) -> bool:
        return not self.closed and self.welcome.done()

    async def call(self, body: bytes, metadata: Metadata, *, timeout_s: float) -> Frame:
        """Send one REQUEST; its REPLY."""
        if self.closed:
            raise self._gone()
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        head = frames.encode_request_head(timeout_s, metadata)
        try:
            self.send(Frame(Kind.REQUEST, request_id, head, body))
            await self.drain()
            return await reply
        except asyncio.CancelledError:
            if self._pending.pop(request_id, None) is not None:
                # The peer stops working on it, as on a cancelled gRPC call.
                self.send(Frame(Kind.CANCEL, request_id))
            raise
        finally:
            self._pending.pop(request_id, None)

    def frame_received(self, frame: Frame) -> None:
        if not self.welcome.done():
            self.welcome.set_result(frame)
            self.frames.max_bytes = self._max_frame
            return
        if frame.kind is not Kind.REPLY:
            raise FrameError(f"a {frame.kind.name} frame where only REPLY may come")
        waiting = self._pending.pop(frame.request_id, None)
        # None: a forward cancelled here meanwhile.
        if waiting is not None and not waiting.done():
            waiting.set_result(frame)

    def bad_frame(self, exc: FrameError) -> None:
        self._why = f"sent a bad frame: {exc}"
        log.warning("data link to %s: closing: %s", self._address, self._why)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if exc is not None and self._why == "closed the connection":
            self._why = f"closed the connection ({exc})"
        if not self.welcome.done():
            self.welcome.set_exception(
                DataPortUnreachable(
                    f"instance at {self._address} did not answer on its data port ({self._why})"
                )
            )
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            if not waiting.done():
                waiting.set_exception(self._gone())

    def _gone(self) -> MeshServeError:
        return PeerUnreachableError(f"instance at {self._address}: data link {self._why}")


def _retrieved(future: asyncio.Future[Frame]) -> None:
    if not future.cancelled():
        future.exception()
