"""A counting reverse proxy for tests: relays loopback TCP connections to a
server byte for byte and logs the method and path of every HTTP/1.1 request.

It lets tests count the requests a server received when the server keeps no
access log worth reading. Nothing is rewritten, so the Host header and the
request signatures (S3 SigV4, Azure SharedKey) arrive as the client made
them. A request is logged before its first byte is forwarded, so a count
read after the response has arrived includes that request.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Final, NamedTuple

__all__ = ["CountingProxy", "RequestLog", "RequestRecord", "RequestStream", "counting_proxy"]


class RequestRecord(NamedTuple):
    method: str
    path: str
    """URL-decoded path, without the query string."""
    target: str
    """The request target as sent (path and query, still encoded)."""


class RequestLog:
    """Requests seen by a proxy or server, in arrival order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def add(self, method: str, target: str) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(target).path)
        with self._lock:
            self._records.append(RequestRecord(method, path, target))

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def count(self, *, method: str | None = "GET", path_substring: str = "") -> int:
        """Requests with this method (None: any) whose decoded path contains
        ``path_substring``."""
        return sum(
            1
            for record in self.records()
            if (method is None or record.method == method) and path_substring in record.path
        )


class RequestStream:
    """Finds the request heads in one connection's client-to-server bytes.

    Bodies are skipped by Content-Length or chunked framing. On anything it
    cannot parse it stops counting that connection rather than guess."""

    _HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _BROKEN = range(6)
    _MAX_HEAD: Final = 256 * 1024

    def __init__(self, on_request: Callable[[str, str], None]) -> None:
        self._on_request = on_request
        self._buffer = bytearray()
        self._state = self._HEAD
        self._left = 0

    def feed(self, data: bytes) -> None:
        if self._state == self._BROKEN:
            return
        self._buffer += data
        while self._step():
            pass

    def _step(self) -> bool:
        """Consume what the current state can; False when more bytes are needed."""
        buffer = self._buffer
        if self._state == self._HEAD:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._MAX_HEAD:
                    self._state = self._BROKEN
                return False
            head = bytes(buffer[:end]).decode("latin-1").lstrip("\r\n")
            del buffer[: end + 4]
            self._start_request(head)
            return self._state != self._BROKEN
        if self._state in (self._BODY, self._CHUNK_DATA):
            taken = min(self._left, len(buffer))
            del buffer[:taken]
            self._left -= taken
            if self._left:
                return False
            self._state = self._HEAD if self._state == self._BODY else self._CHUNK_SIZE
            return True
        if self._state in (self._CHUNK_SIZE, self._TRAILERS):
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if self._state == self._TRAILERS:
                if not line:
                    self._state = self._HEAD
                return True
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._state = self._BROKEN
                return False
            if size == 0:
                self._state = self._TRAILERS
            else:
                self._state, self._left = self._CHUNK_DATA, size + 2  # data, then CRLF
            return True
        return False

    def _start_request(self, head: str) -> None:
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            self._state = self._BROKEN
            return
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self._on_request(parts[0], parts[1])
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = self._CHUNK_SIZE
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._state = self._BROKEN
            return
        self._state, self._left = (self._BODY, length) if length > 0 else (self._HEAD, 0)


class CountingProxy(socketserver.ThreadingTCPServer):
    """Relays each connection to ``upstream`` byte for byte and logs requests."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, *, upstream_port: int, log: RequestLog) -> None:
        self.upstream_port = upstream_port
        self.log = log
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closing = False
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def track(self, sock: socket.socket) -> bool:
        with self._lock:
            if self._closing:
                return False
            self._sockets.add(sock)
            return True

    def untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def close(self) -> None:
        """Stop accepting, cut every open connection, join the relay threads."""
        self.shutdown()
        with self._lock:
            self._closing = True
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server_close()


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: CountingProxy

    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port))
        except OSError:
            return
        with upstream:
            if not (self.server.track(client) and self.server.track(upstream)):
                return
            try:
                back = threading.Thread(
                    target=self._relay_responses, args=(upstream, client), daemon=True
                )
                back.start()
                self._relay_requests(client, upstream)
                back.join()
            finally:
                self.server.untrack(client)
                self.server.untrack(upstream)

    def _relay_requests(self, client: socket.socket, upstream: socket.socket) -> None:
        stream = RequestStream(self.server.log.add)
        try:
            while data := client.recv(65536):
                # Log first: the response must not reach the client before
                # its request is counted.
                stream.feed(data)
                upstream.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    @staticmethod
    def _relay_responses(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        # The server is gone, so nothing more can be relayed on this
        # connection; also unblocks the request relay's recv.
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def counting_proxy(upstream_port: int) -> Iterator[CountingProxy]:
    """A proxy on a free 127.0.0.1 port in front of ``127.0.0.1:upstream_port``;
    on exit it cuts open connections and joins its threads."""
    proxy = CountingProxy(upstream_port=upstream_port, log=RequestLog())
    thread = threading.Thread(target=proxy.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join()
