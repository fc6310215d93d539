"""The REST port's connection bounds (header and body timeouts, connections
per client), on an in-process server over loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from meshserve.server._rest import RestServer, create_rest_app
from meshserve.server._rest_connections import ConnectionLimits
from tests.unit.server.test_rest import FakeBackend

LIMITS = ConnectionLimits(
    header_timeout_s=1.0, body_timeout_s=1.0, idle_timeout_s=30, max_per_client=2
)
LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = create_rest_app(backend=FakeBackend())
    async with RestServer(app=app, host="127.0.0.1", port=0, limits=LIMITS) as server:
        yield server.port


async def _status(reader: asyncio.StreamReader) -> bytes:
    line = await asyncio.wait_for(reader.readline(), 30)
    while (await asyncio.wait_for(reader.readline(), 30)) not in (b"\r\n", b""):
        pass  # the headers
    return line


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """A whole answer to a health probe: status line, headers and body."""
    line = await _status(reader)
    await asyncio.wait_for(reader.readexactly(len(b'{"live":true}')), 30)
    return line


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 30) is not None
    except ConnectionResetError:
        return True


async def test_a_kept_alive_connection_is_not_cut_between_requests(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(LIVE)
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(1.5)  # idle longer than the header and body timeouts
    writer.write(
        b"POST /v2/models/double/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\n"
    )
    writer.write(b"{}")  # the body in time: its error is the app's, not a timeout
    assert (await _status(reader)).startswith(b"HTTP/1.1 400 ")
    writer.close()


async def test_the_next_request_on_a_kept_alive_connection_has_a_header_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(LIVE)
    assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
    writer.write(b"GET /v2/health/live HTTP/1.1\r\nHo")
    assert (await _status(reader)).startswith(b"HTTP/1.1 408 ")
    assert await _closed(reader)
    writer.close()


async def test_a_body_that_stops_coming_is_answered_408(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v2/models/double/infer HTTP/1.1\r\nHost: test\r\nContent-Length: 9\r\n\r\n{"
    )
    line = await _status(reader)
    assert line.startswith(b"HTTP/1.1 408 ")
    assert await _closed(reader)
    writer.close()


async def test_a_client_gets_its_cap_of_connections_and_no_more(port: int) -> None:
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for reader, writer in held:
        writer.write(LIVE)
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200 ")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await _status(reader)).startswith(b"HTTP/1.1 503 ")
    assert await _closed(reader)
    writer.close()
    held.pop()[1].close()
    # Once the server sees the close, the client may connect again.
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(LIVE)
        line = await _status(reader)
        writer.close()
        if line.startswith(b"HTTP/1.1 200 ") or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert line.startswith(b"HTTP/1.1 200 ")
    for _, other in held:
        other.close()
