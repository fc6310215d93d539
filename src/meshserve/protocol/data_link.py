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
"""

from __future__ import annotations

import asyncio
import contextlib
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

__all__ = ["DataLinks"]

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}
_STREAM_LIMIT = 1 << 20
"""asyncio's read buffer per connection: fewer wake-ups for large bodies."""


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
    ) -> None:
        """``timeout_s``: a forward's deadline when the caller gives none;
        ``handshake_timeout_s``: the most a new connection may take to be
        accepted (TCP, TLS and HELLO)."""
        self._max_frame = frames.frame_limit(max_message_bytes)
        self._timeout_s = timeout_s
        self._hello = Frame(Kind.HELLO, head=frames.encode_hello(mesh_token))
        self._ssl = ssl_context
        self._handshake_timeout_s = handshake_timeout_s
        self._links: dict[str, _Link] = {}
        self._opening: dict[str, asyncio.Task[_Link]] = {}

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
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            async with asyncio.timeout(self._handshake_timeout_s):
                reader, writer = await asyncio.open_connection(
                    host,
                    int(port),
                    ssl=self._ssl,
                    server_hostname=host if self._ssl is not None else None,
                    limit=_STREAM_LIMIT,
                )
                try:
                    writer.writelines(frames.encode_frame(self._hello))
                    answer = await frames.read_frame(reader, max_bytes=frames.HEAD_LIMIT_BYTES + 16)
                except BaseException:
                    writer.close()
                    raise
        except TimeoutError:
            raise PeerTimeoutError(
                f"instance at {address} did not accept a data connection within "
                f"{self._handshake_timeout_s:g} s"
            ) from None
        except (OSError, EOFError, FrameError, ssl.SSLError) as exc:
            raise PeerUnreachableError(
                f"instance at {address} did not answer on its data port ({exc})"
            ) from None
        if answer.kind is Kind.REFUSED:
            writer.close()
            raise refused_secret(address)
        if answer.kind is not Kind.WELCOME:
            writer.close()
            raise PeerUnreachableError(
                f"instance at {address} answered a data connection with {answer.kind.name}"
            )
        link = _Link(address, reader, writer, max_frame=self._max_frame)
        link.reading = asyncio.create_task(link.read(), name=f"data-link-read:{address}")
        old = self._links.get(address)
        self._links[address] = link
        if old is not None:
            await old.close()
        log.info("data link to %s open", address)
        return link

    async def close(self) -> None:
        for opening in list(self._opening.values()):
            opening.cancel()
        links, self._links = self._links, {}
        for link in links.values():
            await link.close()


class _Link:
    """One open connection: forwards in flight by request id, and the task
    that reads their replies."""

    def __init__(
        self,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int,
    ) -> None:
        self._address = address
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._next_id = 0
        self.open = True
        self.reading: asyncio.Task[None] | None = None
        """The task running :meth:`read` (its owner's to start)."""

    async def call(self, body: bytes, metadata: Metadata, *, timeout_s: float) -> Frame:
        """Send one REQUEST; its REPLY."""
        if not self.open:
            raise self._gone("closed")
        self._next_id = request_id = (self._next_id + 1) & 0xFFFFFFFF
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        head = frames.encode_request_head(timeout_s, metadata)
        try:
            self._writer.writelines(
                frames.encode_frame(Frame(Kind.REQUEST, request_id, head, body))
            )
            await self._writer.drain()
            return await reply
        except asyncio.CancelledError:
            if self._pending.pop(request_id, None) is not None and self.open:
                # The peer stops working on it, as on a cancelled gRPC call.
                self._writer.write(frames.encode_frame(Frame(Kind.CANCEL, request_id))[0])
            raise
        except (ConnectionError, OSError) as exc:
            raise self._gone(str(exc)) from None
        finally:
            self._pending.pop(request_id, None)

    async def read(self) -> None:
        """Hand each REPLY to its forward, until the connection ends."""
        why = "closed the connection"
        try:
            while True:
                frame = await frames.read_frame(self._reader, max_bytes=self._max_frame)
                if frame.kind is not Kind.REPLY:
                    raise FrameError(f"a {frame.kind.name} frame where only REPLY may come")
                waiting = self._pending.pop(frame.request_id, None)
                # None: a forward cancelled here meanwhile.
                if waiting is not None and not waiting.done():
                    waiting.set_result(frame)
        except asyncio.CancelledError:
            why = "closed here"
            raise
        except FrameError as exc:
            why = f"sent a bad frame: {exc}"
            log.warning("data link to %s: closing: %s", self._address, why)
        except (asyncio.IncompleteReadError, OSError, ssl.SSLError) as exc:
            why = f"closed the connection ({exc})" if str(exc) else why
        finally:
            self._fail(why)

    def _fail(self, why: str) -> None:
        self.open = False
        pending, self._pending = self._pending, {}
        for waiting in pending.values():
            if not waiting.done():
                waiting.set_exception(self._gone(why))
        self._writer.close()

    def _gone(self, why: str) -> MeshServeError:
        return PeerUnreachableError(f"instance at {self._address}: data link {why}")

    async def close(self) -> None:
        if self.reading is not None:
            self.reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reading
        else:
            self._fail("closed here")
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            await self._writer.wait_closed()
