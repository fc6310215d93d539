"""A server handing a shared port (SO_REUSEPORT) over: new connections go to
the other server on the port, its own connections are still served.
Real grpc servers on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from meshserve.server._limits import max_connection_age_s
from meshserve.server._listeners import listening_sockets, stop_listening
from meshserve.settings import ServerSettings

_METHOD = "/test.Which/Name"


def _server(name: bytes, port: int) -> tuple[grpc.aio.Server, int]:
    def which(_request: bytes, _context: grpc.aio.ServicerContext) -> bytes:
        return name

    handler = grpc.method_handlers_generic_handler(
        "test.Which", {"Name": grpc.unary_unary_rpc_method_handler(which)}
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    server.add_generic_rpc_handlers((handler,))
    return server, server.add_insecure_port(f"127.0.0.1:{port}")


@pytest.fixture
async def two_servers() -> AsyncIterator[tuple[int, frozenset[str]]]:
    """Two servers sharing a port; the port and the first one's sockets."""
    first, port = _server(b"first", 0)
    first_sockets = listening_sockets(port)
    second, _ = _server(b"second", port)
    await first.start()
    await second.start()
    try:
        yield port, first_sockets
    finally:
        await first.stop(None)
        await second.stop(None)


def _connect(port: int) -> grpc.aio.Channel:
    # Its own connection: channels of a process share them by default.
    return grpc.aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
    )


async def _ask(channel: grpc.aio.Channel) -> bytes:
    answer: bytes = await channel.unary_unary(_METHOD)(b"", timeout=10)
    return answer


async def test_a_handed_over_port_serves_its_connections_and_sends_new_ones_on(
    two_servers: tuple[int, frozenset[str]],
) -> None:
    port, first_sockets = two_servers
    assert len(first_sockets) == 1
    assert len(listening_sockets(port)) == 2  # both servers of this process
    # Connections until one lands on the first server (the kernel spreads them).
    kept: grpc.aio.Channel | None = None
    for _ in range(200):
        channel = _connect(port)
        if await _ask(channel) == b"first":
            kept = channel
            break
        await channel.close()
    assert kept is not None, "no connection landed on the first server"

    assert stop_listening(first_sockets) == 1
    assert not listening_sockets(port) & first_sockets
    assert await _ask(kept) == b"first"  # its connection is still served
    for _ in range(20):
        async with _connect(port) as fresh:
            assert await _ask(fresh) == b"second"
    await kept.close()


async def test_stopping_sockets_that_are_gone_does_nothing() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        inodes = listening_sockets(sock.getsockname()[1])
        assert len(inodes) == 1
    assert stop_listening(inodes) == 0


def test_a_shared_port_ages_connections_out_within_half_the_lame_duck() -> None:
    settings = ServerSettings(lame_duck_s=5, grpc_max_connection_age_s=3600)
    assert max_connection_age_s(settings, shared=False) == 3600
    assert max_connection_age_s(settings, shared=True) == 2.5
    no_age = ServerSettings(lame_duck_s=5, grpc_max_connection_age_s=0)
    assert max_connection_age_s(no_age, shared=True) == 2.5
    short = ServerSettings(lame_duck_s=5, grpc_max_connection_age_s=1)
    assert max_connection_age_s(short, shared=True) == 1
    no_lame_duck = ServerSettings(lame_duck_s=0, grpc_max_connection_age_s=3600)
    assert max_connection_age_s(no_lame_duck, shared=True) == 3600
