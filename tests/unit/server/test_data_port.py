"""The data port and its client, in process over loopback: the mesh secret,
bad frames, deadlines, cancellation and errors as the gRPC path has them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator

import pytest
import trustme

from meshserve.errors import (
    ModelNotFoundError,
    PeerTimeoutError,
    PeerUnreachableError,
    RateLimitedError,
)
from meshserve.protocol import frames
from meshserve.protocol.data_link import DataLinks
from meshserve.protocol.frames import Frame, Kind
from meshserve.protocol.peer import PeerClient
from meshserve.protocol.routing import Metadata
from meshserve.protocol.service import ForwardedInfer, Peer
from meshserve.security import (
    MeshSecret,
    TlsSettings,
    mesh_client_ssl_context,
    rest_ssl_context,
)
from meshserve.server._data_port import DATA_PORT_METHOD, DataPort
from tests.unit.server.test_internal_port import HANG, OTHER, SECRET, _internal_port

MISSING = b"missing"
BUSY = b"busy"
CRASH = b"crash"
HUGE = b"huge"
LIMIT = 1 << 16


class _Peer:
    """What the forwarding instance's handler would do, observable."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, Metadata, float | None]] = []
        self.cancelled = asyncio.Event()

    async def __call__(
        self, request: bytes, metadata: Metadata, *, timeout_s: float | None, peer: Peer
    ) -> bytes:
        self.seen.append((request, metadata, timeout_s))
        if request == HANG:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if request == MISSING:
            raise ModelNotFoundError("model 'm' is not registered")
        if request == BUSY:
            raise RateLimitedError("too many requests for 'm'")
        if request == CRASH:
            raise RuntimeError("a bug")
        if request == HUGE:
            return b"x" * (LIMIT + 1)
        return b"reply:" + request


@contextlib.asynccontextmanager
async def _data_port(
    denied: list[tuple[str, str]] | None = None,
    *,
    handshake_timeout_s: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    infer: ForwardedInfer | None = None,
    max_message_bytes: int = LIMIT,
) -> AsyncIterator[tuple[DataPort, _Peer]]:
    """A port serving forwards with ``infer`` (default: the ``_Peer`` yielded)."""
    port = DataPort.bind(
        host="127.0.0.1",
        port=0,
        secret=SECRET,
        max_message_bytes=max_message_bytes,
        handshake_timeout_s=handshake_timeout_s,
        ssl_context=ssl_context,
        on_denied=(lambda k, m: denied.append((k, m))) if denied is not None else None,
    )
    peer = _Peer()
    await port.start(infer or peer)
    try:
        yield port, peer
    finally:
        await port.stop(None)


@contextlib.asynccontextmanager
async def _links(secret: MeshSecret = SECRET, *, timeout_s: float = 10) -> AsyncIterator[DataLinks]:
    links = DataLinks(max_message_bytes=LIMIT, timeout_s=timeout_s, mesh_token=secret.token)
    try:
        yield links
    finally:
        await links.close()


async def test_forwards_share_one_connection_and_carry_metadata_and_deadline() -> None:
    async with _data_port() as (port, peer), _links() as links:
        metadata = (("mm-model-id-bin", b"m\xc3\xa9"), ("mm-hops", "1"), ("traceparent", "00-x"))
        replies = await asyncio.gather(
            *(
                links.infer(port.address, f"body-{i}".encode(), metadata, timeout_s=7.5)
                for i in range(20)
            )
        )
        assert replies == [f"reply:body-{i}".encode() for i in range(20)]
        assert {(tuple(m), t) for _, m, t in peer.seen} == {(metadata, 7.5)}
        assert len(port._connections) == 1


async def test_a_peer_holding_another_secret_is_refused_and_told_why() -> None:
    denied: list[tuple[str, str]] = []
    async with _data_port(denied) as (port, _), _links(OTHER) as stranger, _links() as member:
        with pytest.raises(PeerUnreachableError, match="refused this instance's mesh secret"):
            await stranger.infer(port.address, b"payload", ())
        assert denied == [("unauthenticated", DATA_PORT_METHOD)]
        # The port keeps serving its mesh.
        assert await member.infer(port.address, b"payload", ()) == b"reply:payload"


async def _raw(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """What the port sent before closing the connection."""
    return await asyncio.wait_for(reader.read(), timeout=10)


@pytest.mark.parametrize(
    "first",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # garbage: a length far over the HELLO limit
        struct.pack("!IBII", 9, 42, 0, 0),  # an unknown kind
        b"".join(frames.encode_frame(Frame(Kind.REQUEST, 1, b"", b"no hello first"))),
    ],
)
async def test_a_connection_that_does_not_start_with_the_secret_is_closed_and_the_port_serves_on(
    first: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    denied: list[tuple[str, str]] = []
    async with _data_port(denied) as (port, peer), _links() as member:
        reader, writer = await _raw(port.address)
        writer.write(first)
        sent = await _closed(reader)
        writer.close()
        assert Kind.WELCOME.to_bytes(1, "big") not in sent[4:5]
        assert peer.seen == []  # nothing reached the instance
        assert denied == [("unauthenticated", DATA_PORT_METHOD)]
        assert await member.infer(port.address, b"after", ()) == b"reply:after"


async def test_a_connection_that_says_nothing_is_closed_after_the_handshake_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _data_port(handshake_timeout_s=0.2) as (port, _):
        reader, writer = await _raw(port.address)
        with caplog.at_level(logging.WARNING):
            assert await _closed(reader) == b""
        writer.close()
    assert any("no HELLO within 0.2 s" in r.getMessage() for r in caplog.records)


async def test_a_wrong_token_is_never_echoed_or_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with _data_port() as (port, _):
        reader, writer = await _raw(port.address)
        hello = Frame(Kind.HELLO, head=frames.encode_hello(OTHER.token))
        with caplog.at_level(logging.DEBUG):
            writer.writelines(frames.encode_frame(hello))
            sent = await _closed(reader)
        writer.close()
    assert OTHER.token.encode() not in sent and SECRET.token.encode() not in sent
    assert b"mesh secret" in sent  # REFUSED, with the reason
    assert all(OTHER.token not in r.getMessage() for r in caplog.records)


async def test_a_bad_frame_after_the_handshake_closes_that_connection_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _data_port() as (port, peer), _links() as member:
        reader, writer = await _raw(port.address)
        writer.writelines(
            frames.encode_frame(Frame(Kind.HELLO, head=frames.encode_hello(SECRET.token)))
        )
        welcome = await reader.readexactly(13)
        assert welcome[4] == Kind.WELCOME
        with caplog.at_level(logging.WARNING):
            # A frame claiming more than the limit: judged by its prefix.
            writer.write(struct.pack("!IBII", frames.frame_limit(LIMIT) + 1, Kind.REQUEST, 1, 0))
            assert await _closed(reader) == b""
        writer.close()
        assert any("over the limit" in r.getMessage() for r in caplog.records)
        assert peer.seen == []
        assert await member.infer(port.address, b"after", ()) == b"reply:after"


async def test_errors_come_back_as_the_types_the_grpc_path_raises() -> None:
    async with _data_port() as (port, _), _links() as links:
        with pytest.raises(ModelNotFoundError, match="is not registered"):
            await links.infer(port.address, MISSING, ())
        with pytest.raises(RateLimitedError, match="too many requests"):
            await links.infer(port.address, BUSY, ())
        # An unexpected error: INTERNAL without a type, as reports_errors sends it.
        with pytest.raises(Exception, match="internal error: a bug") as crashed:
            await links.infer(port.address, CRASH, ())
        assert type(crashed.value).__name__ == "MeshServeError"
        # A response over the limit is refused where it was made.
        with pytest.raises(Exception, match="over the limit") as huge:
            await links.infer(port.address, HUGE, ())
        assert type(huge.value).__name__ == "MessageTooLargeError"
        assert await links.infer(port.address, b"fine", ()) == b"reply:fine"


async def test_a_forward_past_its_deadline_is_a_peer_timeout_and_the_peer_stops_working() -> None:
    async with _data_port() as (port, peer), _links(timeout_s=30) as links:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PeerTimeoutError, match="did not answer in time"):
            await links.infer(port.address, HANG, (), timeout_s=0.2)
        assert loop.time() - started < 5  # not the link's 30 s default
        await asyncio.wait_for(peer.cancelled.wait(), timeout=5)
        # The connection survives a cancelled forward.
        assert await links.infer(port.address, b"next", ()) == b"reply:next"
        assert len(port._connections) == 1


async def test_a_peer_that_goes_mid_forward_is_unreachable_and_the_next_forward_reconnects() -> (
    None
):
    async with _links() as links:
        async with _data_port() as (port, _):
            address = port.address
            pending = asyncio.create_task(links.infer(address, HANG, ()))
            await asyncio.sleep(0.2)
            await port.stop(None)
            with pytest.raises(PeerUnreachableError):
                await asyncio.wait_for(pending, timeout=5)
        with pytest.raises(PeerUnreachableError, match="did not answer on its data port"):
            await links.infer(address, b"gone", ())
        async with _data_port() as (port, _):
            assert await links.infer(port.address, b"again", ()) == b"reply:again"


@pytest.fixture
def mesh_tls(tmp_path: pathlib.Path) -> TlsSettings:
    """An instance's files: its certificate (for 127.0.0.1) and the mesh's CA."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name="instance")
    ca.cert_pem.write_to_path(tmp_path / "ca.crt")
    leaf.private_key_pem.write_to_path(tmp_path / "tls.key")
    leaf.cert_chain_pems[0].write_to_path(tmp_path / "tls.crt")
    return TlsSettings(
        cert_file=tmp_path / "tls.crt", key_file=tmp_path / "tls.key", ca_file=tmp_path / "ca.crt"
    )


async def test_with_tls_the_data_port_is_mutual_tls_and_still_wants_the_secret(
    mesh_tls: TlsSettings, tmp_path: pathlib.Path
) -> None:
    mutual = rest_ssl_context(mesh_tls.for_mesh_links())
    async with _data_port(ssl_context=mutual) as (port, _):
        await _refuses_all_but_members(port, mesh_tls)


async def _refuses_all_but_members(port: DataPort, mesh_tls: TlsSettings) -> None:
    member = DataLinks(
        max_message_bytes=LIMIT,
        timeout_s=10,
        mesh_token=SECRET.token,
        ssl_context=mesh_client_ssl_context(mesh_tls),
    )
    # The CA's certificate without the secret is not enough.
    stranger = DataLinks(
        max_message_bytes=LIMIT,
        timeout_s=10,
        mesh_token=OTHER.token,
        ssl_context=mesh_client_ssl_context(mesh_tls),
    )
    try:
        assert await member.infer(port.address, b"sealed", ()) == b"reply:sealed"
        with pytest.raises(PeerUnreachableError, match="refused this instance's mesh secret"):
            await stranger.infer(port.address, b"sealed", ())
        # Without a client certificate the TLS handshake fails: no frame is read.
        anonymous = ssl.create_default_context(cafile=mesh_tls.ca_file)
        host, _, number = port.address.rpartition(":")
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(host, int(number), ssl=anonymous)
            hello = Frame(Kind.HELLO, head=frames.encode_hello(SECRET.token))
            writer.writelines(frames.encode_frame(hello))
            if not await reader.read(64):
                raise ConnectionError("closed")
        # Plain TCP to a TLS port: no frame gets through either.
        with pytest.raises(PeerUnreachableError):
            plain = DataLinks(max_message_bytes=LIMIT, timeout_s=10, mesh_token=SECRET.token)
            try:
                await plain.infer(port.address, b"plain", ())
            finally:
                await plain.close()
    finally:
        await member.close()
        await stranger.close()


async def test_a_stop_lets_forwards_in_flight_finish_and_does_not_wait_for_idle_links() -> None:
    release = asyncio.Event()

    async def slow(
        request: bytes, metadata: Metadata, *, timeout_s: float | None, peer: Peer
    ) -> bytes:
        if request == b"slow":
            await release.wait()
        return request

    async with _links() as links, _data_port(infer=slow) as (port, _):
        assert await links.infer(port.address, b"warm", ()) == b"warm"
        in_flight = asyncio.create_task(links.infer(port.address, b"slow", ()))
        await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        stopping = asyncio.create_task(port.stop(30))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # the forward in flight holds it
        started = loop.time()
        release.set()
        assert await in_flight == b"slow"
        await asyncio.wait_for(stopping, timeout=5)  # not the 30 s grace
        assert loop.time() - started < 5
        with pytest.raises(PeerUnreachableError):
            await links.infer(port.address, b"after", ())


def _closed_address() -> str:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_a_data_port_that_cannot_be_reached_is_skipped_and_forwards_go_over_grpc() -> None:
    links = DataLinks(max_message_bytes=LIMIT, timeout_s=10, mesh_token=SECRET.token, retry_s=30)
    client = PeerClient(
        max_message_bytes=LIMIT, timeout_s=10, mesh_token=SECRET.token, data_links=links
    )
    dead = _closed_address()
    try:
        async with _internal_port([]) as grpc_address:
            # Nothing was sent to the data port: the internal port serves it.
            assert await client.infer(grpc_address, b"payload", (), data_address=dead) == b"payload"
            assert not links.usable(dead)  # skipped for retry_s: no reconnect per forward
            assert await client.infer(grpc_address, b"again", (), data_address=dead) == b"again"
    finally:
        await client.close()


async def test_a_data_port_refusing_the_secret_is_no_reason_to_try_grpc() -> None:
    # Its gRPC calls would be served (the token the internal port wants):
    # the refusal on the data port must not send it there.
    stranger = PeerClient(
        max_message_bytes=LIMIT,
        timeout_s=10,
        mesh_token=SECRET.token,
        data_links=DataLinks(max_message_bytes=LIMIT, timeout_s=10, mesh_token=OTHER.token),
    )
    try:
        async with _data_port() as (port, peer), _internal_port([]) as grpc_address:
            with pytest.raises(PeerUnreachableError, match="refused this instance's mesh secret"):
                await stranger.infer(grpc_address, b"payload", (), data_address=port.address)
            assert peer.seen == []
    finally:
        await stranger.close()


async def test_large_bodies_cross_in_pieces_both_ways_and_concurrently() -> None:
    big = 8 << 20

    async def echo(
        request: bytes, metadata: Metadata, *, timeout_s: float | None, peer: Peer
    ) -> bytes:
        return request[::-1]

    links = DataLinks(max_message_bytes=big, timeout_s=30, mesh_token=SECRET.token)
    try:
        async with _data_port(infer=echo, max_message_bytes=big) as (port, _):
            bodies = [bytes([i]) * (big - 3 * i) + b"end" * i for i in range(1, 4)]
            replies = await asyncio.gather(*(links.infer(port.address, b, ()) for b in bodies))
            assert replies == [b[::-1] for b in bodies]
    finally:
        await links.close()


def test_forwards_cross_on_uvloop_the_servers_default_loop() -> None:
    # uvloop's transports are not asyncio.Transport subclasses.
    import uvloop

    async def forward() -> bytes:
        async with _data_port() as (port, _peer), _links() as links:
            return await links.infer(port.address, b"body", (("mm-hops", "1"),), timeout_s=5)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(forward()) == b"reply:body"
