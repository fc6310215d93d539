"""Limits on the REST port's connections: how long a client may take to send
a request, and how many connections one client may hold.

uvicorn bounds only the idle time between requests (``timeout_keep_alive``);
a client that sends half its headers, or a chunked body that never ends,
holds a connection and its task for ever (slowloris). :func:`guarded_protocol`
gives uvicorn's httptools protocol three more bounds:

- headers: a request's headers must be complete within ``header_timeout_s``
  of the connection opening (or, on a kept-alive connection, of the
  request's first byte); otherwise 408 (when part of a request came) and
  close;
- body: the body must be complete within ``body_timeout_s`` of the headers;
  otherwise 408 and close (the app sees the client disconnect);
- clients: a client IP address may hold ``max_per_client`` connections;
  a connection beyond is answered 503 and closed at once.

The protocol is uvicorn's own, subclassed where its parser reports a
request's progress; uvicorn takes a protocol class as ``Config(http=...)``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["ConnectionLimits", "guarded_protocol"]


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds of one REST server (see ``ServerSettings``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: int = 5
    max_per_client: int = 0
    """0: unlimited."""


class _ClientCount:
    """Open connections per client address, shared by one server's connections."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: Counter[str] = Counter()

    def add(self, host: str) -> bool:
        """Count one more connection from ``host``; False (not counted) when
        it has as many as allowed."""
        if self._limit and self._open[host] >= self._limit:
            return False
        self._open[host] += 1
        return True

    def remove(self, host: str) -> None:
        self._open[host] -= 1
        if self._open[host] <= 0:
            del self._open[host]


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """A uvicorn HTTP protocol class enforcing ``limits``, with its own
    count of connections per client (one per server)."""
    clients = _ClientCount(limits.max_per_client)

    class _Protocol(_GuardedProtocol):
        _limits = limits
        _clients = clients

    return _Protocol


def _response(status: bytes, message: str) -> bytes:
    body = orjson.dumps({"error": message})
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class _GuardedProtocol(HttpToolsProtocol):
    """uvicorn's protocol with one timer per connection: the header timeout
    from the connection (or the request's first byte) to the end of its
    headers, then the body timeout to the end of its body."""

    _limits: ConnectionLimits
    _clients: _ClientCount

    _host: str | None = None
    """The client address counted for this connection (None: not counted)."""
    _timer: asyncio.TimerHandle | None = None
    _started = False
    """Some of the current request has arrived."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        if not self._clients.add(host):
            limit = self._limits.max_per_client
            message = (
                f"too many connections from {host}: at most {limit} per client "
                "(server.maxConnectionsPerClient)"
            )
            self.transport.write(_response(b"503 Service Unavailable", message))
            self.transport.close()
            return
        self._host = host
        self._arm(self._limits.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._host is not None:
            self._clients.remove(self._host)
            self._host = None
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._started = True
        if self._timer is None:  # a kept-alive connection's next request
            self._arm(self._limits.header_timeout_s, self._headers_late)

    def on_headers_complete(self) -> None:
        self._arm(self._limits.body_timeout_s, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self._started = False
        super().on_message_complete()

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        # A previous request still answering (pipelined) owns the socket.
        idle = self.cycle is None or self.cycle.response_complete
        if self._started and idle:
            message = (
                f"request headers not received within {self._limits.header_timeout_s:g} s "
                "(server.headerTimeoutS)"
            )
            self.transport.write(_response(b"408 Request Timeout", message))
        self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if not cycle.response_started:
            # The app waits for the rest of the body: from now on it sees
            # the client gone, and nothing it sends reaches the socket.
            cycle.disconnected = True
            cycle.message_event.set()
            message = (
                f"request body not received within {self._limits.body_timeout_s:g} s "
                "(server.bodyTimeoutS)"
            )
            self.transport.write(_response(b"408 Request Timeout", message))
        self.transport.close()
