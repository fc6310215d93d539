"""The payload processors' HTTP client against real servers on loopback that
answer the ways HTTP servers do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from meshserve.payloads._http import HttpPoster, PostFailed

Answer = Callable[[int], bytes]
"""The n-th request on a connection (from 0) -> the bytes answered."""


class _Server:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.connections = 0
        self.close_silently = False
        """Close each connection after one reply without saying so (an idle
        keep-alive timeout)."""
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                reply = self.answer(n)
                n += 1
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower() or reply.startswith(b"HTTP/1.0"):
                    break
                if self.close_silently:
                    await asyncio.sleep(0.05)  # after the client read the reply
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def server_for() -> AsyncIterator[Callable[[Answer], asyncio.Future[_Server]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Answer) -> _Server:
        state = _Server(answer)
        server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/events"
        return state

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_posts_on_one_kept_connection(server_for) -> None:  # type: ignore[no-untyped-def]
    server = await server_for(lambda n: OK)
    poster = HttpPoster(server.url, timeout_s=5)
    for _ in range(3):
        await poster.post(b'{"a":1}', headers={"ce-id": "x"})
    poster.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /events HTTP/1.1\r\n")
    assert b"\r\nce-id: x\r\n" in first and b"\r\ncontent-length: 7\r\n" in first
    assert first.endswith(b'\r\n\r\n{"a":1}')


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end",
        b"HTTP/1.0 200 OK\r\n\r\n",
    ],
)
async def test_every_way_of_ending_a_reply_is_read(server_for, reply: bytes) -> None:  # type: ignore[no-untyped-def]
    server = await server_for(lambda n: reply)
    poster = HttpPoster(server.url, timeout_s=5)
    await poster.post(b"{}", headers={})
    await poster.post(b"{}", headers={})
    poster.close()
    assert len(server.requests) == 2


async def test_an_error_answer_fails_the_post(server_for) -> None:  # type: ignore[no-untyped-def]
    server = await server_for(lambda n: b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
    poster = HttpPoster(server.url, timeout_s=5)
    with pytest.raises(PostFailed, match="answered 503"):
        await poster.post(b"{}", headers={})
    poster.close()


async def test_a_silent_endpoint_times_out(server_for) -> None:  # type: ignore[no-untyped-def]
    never = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await never.wait()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = HttpPoster(f"http://127.0.0.1:{port}/", timeout_s=0.3)
    with pytest.raises(TimeoutError):
        await poster.post(b"{}", headers={})
    poster.close()
    server.close()


async def test_a_line_break_in_a_header_value_is_refused(server_for) -> None:  # type: ignore[no-untyped-def]
    server = await server_for(lambda n: OK)
    poster = HttpPoster(server.url, timeout_s=5)
    with pytest.raises(PostFailed, match="control character"):
        await poster.post(b"{}", headers={"ce-modelid": "m\r\nx-injected: 1"})
    poster.close()
    assert server.requests == []


async def test_a_connection_the_server_dropped_is_reopened(server_for) -> None:  # type: ignore[no-untyped-def]
    server = await server_for(lambda n: OK)
    server.close_silently = True
    poster = HttpPoster(server.url, timeout_s=5)
    await poster.post(b"{}", headers={})
    await asyncio.sleep(0.2)
    await poster.post(b"{}", headers={})
    poster.close()
    assert len(server.requests) == 2
    assert server.connections == 2
