"""An HTTPS file server in the test process, for the HTTP(S) model source.

``run_https_server`` serves a directory over TLS with a trustme certificate
for 127.0.0.1 (clients must be given the CA: nothing else trusts it), with
Content-Length, ETag/If-None-Match, Last-Modified and single byte ranges,
and lets a test inject transient failures, require a header, and require
a client certificate.
"""

from __future__ import annotations

import contextlib
import email.message
import email.utils
import http.server
import os
import pathlib
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import trustme

from tests.integration._counting_proxy import RequestLog

__all__ = ["HttpsServer", "run_https_server"]


class _HttpsRules:
    """What the HTTPS server does besides serving files; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: dict[str, tuple[int, int]] = {}
        """path -> (failures left, status)"""
        self.required_headers: dict[str, str] = {}

    def take_failure(self, path: str) -> int | None:
        with self.lock:
            left, status = self.failures.get(path, (0, 0))
            if left <= 0:
                return None
            self.failures[path] = (left - 1, status)
            return status

    def authorized(self, headers: email.message.Message) -> bool:
        with self.lock:
            required = dict(self.required_headers)
        return all(headers.get(name) == value for name, value in required.items())


@dataclass(frozen=True)
class HttpsServer:
    url: str
    """``https://127.0.0.1:PORT``"""
    ca_pem: pathlib.Path
    """The trustme CA that signed the server's certificate (trust only it)."""
    root: pathlib.Path
    """Files served from here: ``url + "/a/b.bin"`` is ``root / "a/b.bin"``."""
    client_cert: pathlib.Path | None
    """With ``run_https_server(client_cert_required=True)``: a PEM holding a
    client certificate signed by the same CA, and its key."""
    requests: RequestLog = field(repr=False, compare=False)
    _rules: _HttpsRules = field(repr=False, compare=False)

    def request_count(self, path: str, *, method: str | None = None) -> int:
        """Requests (any method by default) for exactly this URL-decoded
        path (no query), failed ones included."""
        return sum(
            1
            for record in self.requests.records()
            if record.path == path and (method is None or record.method == method)
        )

    def fail_next(self, path: str, times: int, status: int = 503) -> None:
        """Answer the next ``times`` requests for ``path`` with ``status``
        (before any other check), then serve normally."""
        with self._rules.lock:
            self._rules.failures[path] = (times, status)

    def require_header(self, name: str, value: str) -> None:
        """From now on answer 401 to requests without ``name: value``."""
        with self._rules.lock:
            self._rules.required_headers[name] = value

    def clear_rules(self) -> None:
        """Forget pending failures and required headers."""
        with self._rules.lock:
            self._rules.failures.clear()
            self._rules.required_headers.clear()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA (and presents the
        client certificate when there is one)."""
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        if self.client_cert is not None:
            context.load_cert_chain(str(self.client_cert))
        return context


class _FileHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpsFileServer
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections end after this, so shutdown never waits long.
    timeout = 5

    def setup(self) -> None:
        super().setup()
        # The handshake happens here, in this connection's thread, so a
        # client that never completes it cannot stall the accept loop.
        connection = self.connection
        assert isinstance(connection, ssl.SSLSocket)
        connection.do_handshake()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_PUT(self) -> None:
        self._reply(405)

    do_POST = do_DELETE = do_PUT

    def _serve(self, *, body: bool) -> None:
        self.server.log.add(self.command, self.path)
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        rules = self.server.rules
        if (status := rules.take_failure(path)) is not None:
            self._reply(status, body=body)
            return
        if not rules.authorized(self.headers):
            self._reply(401, body=body)
            return
        root = self.server.root
        file = (root / path.lstrip("/")).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            self._reply(404, body=body)
            return
        stat = file.stat()
        etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        headers = {
            "ETag": etag,
            "Last-Modified": email.utils.formatdate(stat.st_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if self.headers.get("If-None-Match") == etag:
            self._reply(304, headers=headers, body=False)
            return
        start, end = 0, stat.st_size
        status = 200
        if (byte_range := self.headers.get("Range")) is not None:
            parsed = _parse_range(byte_range, stat.st_size)
            if parsed is None:
                self._reply(416, headers={"Content-Range": f"bytes */{stat.st_size}"}, body=body)
                return
            start, end = parsed
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{stat.st_size}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if body:
            with file.open("rb") as source:
                source.seek(start)
                left = end - start
                while left and (chunk := source.read(min(left, 1 << 20))):
                    self.wfile.write(chunk)
                    left -= len(chunk)

    def _reply(
        self, status: int, *, headers: dict[str, str] | None = None, body: bool = True
    ) -> None:
        content = f"{status}\n".encode() if body and status != 304 else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=A-B``, ``bytes=A-`` or ``bytes=-N`` as [start, end), or None
    when unsatisfiable or not one of those (multiple ranges are not served)."""
    unit, _, spec = value.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or "," in spec:
        return None
    try:
        if not first:
            start, end = max(size - int(last), 0), size
        else:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
    except ValueError:
        return None
    return (start, end) if 0 <= start < end else None


class _HttpsFileServer(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        *,
        root: pathlib.Path,
        context: ssl.SSLContext,
        log: RequestLog,
        rules: _HttpsRules,
    ) -> None:
        self.root = root
        self.log = log
        self.rules = rules
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), _FileHandler)
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        if isinstance(request, socket.socket):
            with self._lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        if isinstance(request, socket.socket):
            with self._lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up or fail the TLS handshake (no client
        # certificate, untrusted CA) are part of the tests, not errors.
        pass

    def close(self) -> None:
        self.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self.server_close()


@contextlib.contextmanager
def run_https_server(
    workdir: pathlib.Path, *, client_cert_required: bool = False
) -> Iterator[HttpsServer]:
    """A threaded HTTPS file server in this process serving ``workdir/root``,
    with a trustme certificate for 127.0.0.1 (CA in ``workdir/ca.pem``).

    GET and HEAD, with Content-Length, ETag/If-None-Match, Last-Modified and
    single byte ranges. ``client_cert_required`` refuses the TLS handshake
    without a client certificate signed by the same CA.
    """
    root = (workdir / "root").resolve()
    root.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca_pem = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    client_cert: pathlib.Path | None = None
    if client_cert_required:
        ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
        client_cert = workdir / "client.pem"
        issued = ca.issue_cert("client.meshserve.test")
        with client_cert.open("wb") as out:
            out.write(issued.private_key_pem.bytes())
            for blob in issued.cert_chain_pems:
                out.write(blob.bytes())
        os.chmod(client_cert, 0o600)
    log, rules = RequestLog(), _HttpsRules()
    server = _HttpsFileServer(root=root, context=context, log=log, rules=rules)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield HttpsServer(
            url=f"https://127.0.0.1:{server.server_address[1]}",
            ca_pem=ca_pem,
            root=root,
            client_cert=client_cert,
            requests=log,
            _rules=rules,
        )
    finally:
        server.close()
        thread.join()
