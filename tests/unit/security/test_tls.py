"""TLS building blocks against real handshakes on loopback.

A grpc.aio server and a plain asyncio TLS server (what uvicorn runs on) use
the credentials under test; clients are grpc channels and raw ``ssl``
sockets, which tell exactly which certificate a new connection was served.
Certificates are minted by trustme and rotated by rewriting the files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import grpc.aio
import httpx
import pytest
import trustme
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from meshserve.security import (
    ClientAuth,
    TlsSettings,
    certificate_date_problem,
    grpc_channel_credentials,
    grpc_server_credentials,
    rest_ssl_context,
)

_METHOD = "/test.Echo/Echo"


def _pkcs8(cert: trustme.LeafCert) -> bytes:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _chain(cert: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in cert.cert_chain_pems)


def _serial(cert: trustme.LeafCert) -> int:
    return x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes()).serial_number


def _replace(path: pathlib.Path, data: bytes) -> None:
    """Write like a careful rotation tool: a new file renamed into place."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Pki:
    directory: pathlib.Path
    ca: trustme.CA
    client: trustme.LeafCert

    def server_settings(self, client_auth: ClientAuth = "require") -> TlsSettings:
        return TlsSettings(
            cert_file=self.directory / "tls.crt",
            key_file=self.directory / "tls.key",
            ca_file=self.directory / "ca.crt",
            client_auth=client_auth,
            reload_interval_s=0,
        )

    def install_server_cert(self, cert: trustme.LeafCert) -> None:
        _replace(self.directory / "tls.crt", _chain(cert))
        _replace(self.directory / "tls.key", _pkcs8(cert))

    def install_ca(self, ca: trustme.CA) -> None:
        _replace(self.directory / "ca.crt", ca.cert_pem.bytes())

    def client_files(self, cert: trustme.LeafCert, name: str) -> tuple[pathlib.Path, pathlib.Path]:
        chain, key = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        chain.write_bytes(_chain(cert))
        key.write_bytes(_pkcs8(cert))
        return chain, key


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    ca = trustme.CA()
    pki = Pki(directory=tmp_path, ca=ca, client=ca.issue_cert("client.test", common_name="client"))
    pki.install_ca(ca)
    pki.install_server_cert(ca.issue_cert("127.0.0.1", "localhost", common_name="server-1"))
    return pki


# -- clients -----------------------------------------------------------


def _client_context(
    pki: Pki, *, client: trustme.LeafCert | None, trust: trustme.CA | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    (trust or pki.ca).configure_trust(context)
    if client is not None:
        chain, key = pki.client_files(client, "raw-client")
        context.load_cert_chain(chain, key)
    return context


def _handshake(port: int, context: ssl.SSLContext, *, alpn: str | None = None) -> int:
    """Connect, exchange one line, and return the serial of the server's cert.

    TLS 1.3 clients finish their handshake before the server has checked the
    client's certificate, so a refusal shows up on the first read.
    """
    if alpn is not None:
        context.set_alpn_protocols([alpn])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        if alpn is None:  # the echo server: prove the connection carries data
            tls.sendall(b"ping\n")
            if tls.recv(5) != b"ping\n":
                raise ConnectionError("the server closed the connection")
        return x509.load_der_x509_certificate(der).serial_number


# -- gRPC --------------------------------------------------------------


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


@contextlib.asynccontextmanager
async def _grpc_server(credentials: grpc.ServerCredentials) -> AsyncIterator[int]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


def _channel_credentials(
    pki: Pki, client: trustme.LeafCert | None, trust: trustme.CA | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=(trust or pki.ca).cert_pem.bytes(),
        private_key=_pkcs8(client) if client is not None else None,
        certificate_chain=_chain(client) if client is not None else None,
    )


async def _call(channel: grpc.aio.Channel, payload: bytes = b"hello") -> bytes:
    reply: bytes = await channel.unary_unary(_METHOD)(payload, timeout=5)
    return reply


@contextlib.asynccontextmanager
async def _channel(
    port: int, credentials: grpc.ChannelCredentials
) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        yield channel


async def test_grpc_mutual_tls_serves_a_client_with_a_certificate(pki: Pki) -> None:
    async with (
        _grpc_server(grpc_server_credentials(pki.server_settings("require"))) as port,
        _channel(port, _channel_credentials(pki, pki.client)) as channel,
    ):
        assert await _call(channel) == b"hello"


@pytest.mark.parametrize("who", ["no certificate", "certificate from another CA"])
async def test_grpc_require_refuses_clients_without_a_trusted_certificate(
    pki: Pki, who: str
) -> None:
    client = trustme.CA().issue_cert("client.test") if who != "no certificate" else None
    async with (
        _grpc_server(grpc_server_credentials(pki.server_settings("require"))) as port,
        _channel(port, _channel_credentials(pki, client)) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(channel)
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_grpc_optional_serves_a_client_without_a_certificate(pki: Pki) -> None:
    async with (
        _grpc_server(grpc_server_credentials(pki.server_settings("optional"))) as port,
        _channel(port, _channel_credentials(pki, None)) as channel,
    ):
        assert await _call(channel) == b"hello"


async def test_grpc_client_refuses_a_server_from_another_ca(pki: Pki) -> None:
    async with (
        _grpc_server(grpc_server_credentials(pki.server_settings("none"))) as port,
        _channel(port, _channel_credentials(pki, None, trust=trustme.CA())) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await _call(channel)


async def test_grpc_rotated_certificate_reaches_new_connections_and_open_ones_keep_working(
    pki: Pki,
) -> None:
    first = _serial_of_installed(pki)
    context = _client_context(pki, client=pki.client)
    async with (
        _grpc_server(grpc_server_credentials(pki.server_settings("require"))) as port,
        _channel(port, _channel_credentials(pki, pki.client)) as open_channel,
    ):
        assert await _call(open_channel) == b"hello"
        assert await asyncio.to_thread(_handshake, port, context, alpn="h2") == first

        rotated = pki.ca.issue_cert("127.0.0.1", "localhost", common_name="server-2")
        pki.install_server_cert(rotated)

        assert await asyncio.to_thread(_handshake, port, context, alpn="h2") == _serial(rotated)
        assert await _call(open_channel, b"still here") == b"still here"
        async with _channel(port, _channel_credentials(pki, pki.client)) as fresh:
            assert await _call(fresh) == b"hello"


async def test_grpc_half_written_rotation_keeps_the_old_pair(pki: Pki) -> None:
    first = _serial_of_installed(pki)
    context = _client_context(pki, client=pki.client)
    async with _grpc_server(grpc_server_credentials(pki.server_settings("require"))) as port:
        rotated = pki.ca.issue_cert("127.0.0.1", common_name="server-2")
        _replace(pki.directory / "tls.crt", _chain(rotated))  # the key is not there yet
        assert await asyncio.to_thread(_handshake, port, context, alpn="h2") == first
        _replace(pki.directory / "tls.key", _pkcs8(rotated))
        assert await asyncio.to_thread(_handshake, port, context, alpn="h2") == _serial(rotated)


def _serial_of_installed(pki: Pki) -> int:
    pem = (pki.directory / "tls.crt").read_bytes()
    return x509.load_pem_x509_certificates(pem)[0].serial_number


async def test_grpc_channel_credentials_give_a_mutual_tls_link(pki: Pki) -> None:
    peer = pki.ca.issue_cert("127.0.0.1", common_name="instance-b")
    chain, key = pki.client_files(peer, "instance-b")
    link = TlsSettings(cert_file=chain, key_file=key, ca_file=pki.directory / "ca.crt")
    server_settings = pki.server_settings("none").for_mesh_links()
    assert server_settings.client_auth == "require"
    async with (
        _grpc_server(grpc_server_credentials(server_settings)) as port,
        _channel(port, grpc_channel_credentials(link)) as channel,
    ):
        assert await _call(channel) == b"hello"
    outsider = trustme.CA().issue_cert("127.0.0.1")
    chain, key = pki.client_files(outsider, "outsider")
    stranger = TlsSettings(cert_file=chain, key_file=key, ca_file=pki.directory / "ca.crt")
    async with (
        _grpc_server(grpc_server_credentials(server_settings)) as port,
        _channel(port, grpc_channel_credentials(stranger)) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError):
            await _call(channel)


# -- REST (stdlib ssl, as uvicorn uses it) -------------------------------


async def _echo_lines(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()


@contextlib.asynccontextmanager
async def _tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo_lines, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def _open_connection(port: int, context: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        yield tls


def _refused(port: int, context: ssl.SSLContext) -> bool:
    try:
        _handshake(port, context)
    except (ssl.SSLError, ConnectionError):
        return True
    return False


async def test_rest_context_maps_client_auth_to_verify_modes(pki: Pki) -> None:
    names: tuple[ClientAuth, ...] = ("none", "optional", "require")
    modes = {name: rest_ssl_context(pki.server_settings(name)).verify_mode for name in names}
    assert modes == {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
        "require": ssl.CERT_REQUIRED,
    }


async def test_rest_require_refuses_a_client_without_a_trusted_certificate(pki: Pki) -> None:
    async with _tls_server(rest_ssl_context(pki.server_settings("require"))) as port:
        assert await asyncio.to_thread(_handshake, port, _client_context(pki, client=pki.client))
        assert await asyncio.to_thread(_refused, port, _client_context(pki, client=None))
        outsider = trustme.CA().issue_cert("client.test")
        assert await asyncio.to_thread(_refused, port, _client_context(pki, client=outsider))


async def test_rest_optional_serves_without_a_certificate_and_checks_one_given(pki: Pki) -> None:
    async with _tls_server(rest_ssl_context(pki.server_settings("optional"))) as port:
        assert not await asyncio.to_thread(_refused, port, _client_context(pki, client=None))
        outsider = trustme.CA().issue_cert("client.test")
        assert await asyncio.to_thread(_refused, port, _client_context(pki, client=outsider))


async def test_rest_rotated_certificate_reaches_new_connections_and_open_ones_keep_working(
    pki: Pki,
) -> None:
    first = _serial_of_installed(pki)
    context = _client_context(pki, client=pki.client)
    async with _tls_server(rest_ssl_context(pki.server_settings("require"))) as port:

        def rotate_under_an_open_connection() -> tuple[int, int, bytes]:
            with _open_connection(port, context) as open_connection:
                der = open_connection.getpeercert(binary_form=True)
                assert der is not None
                before = x509.load_der_x509_certificate(der).serial_number
                pki.install_server_cert(rotated)
                after = _handshake(port, context)
                open_connection.sendall(b"still here\n")
                return before, after, open_connection.recv(11)

        rotated = pki.ca.issue_cert("127.0.0.1", common_name="server-2")
        before, after, echoed = await asyncio.to_thread(rotate_under_an_open_connection)
    assert before == first
    assert after == _serial(rotated)
    assert echoed == b"still here\n"


async def test_rest_rotated_ca_replaces_the_old_one(pki: Pki) -> None:
    """A CA removed from the file is no longer trusted, not merely joined by
    the new one."""
    async with _tls_server(rest_ssl_context(pki.server_settings("require"))) as port:
        old_client = _client_context(pki, client=pki.client)
        assert not await asyncio.to_thread(_refused, port, old_client)
        new_ca = trustme.CA()
        pki.install_ca(new_ca)
        new_client = _client_context(pki, client=new_ca.issue_cert("client.test"))
        assert not await asyncio.to_thread(_refused, port, new_client)
        assert await asyncio.to_thread(_refused, port, old_client)


async def test_rest_files_are_checked_once_per_interval(pki: Pki) -> None:
    now = [0.0]
    settings = pki.server_settings("require").model_copy(update={"reload_interval_s": 10.0})
    first = _serial_of_installed(pki)
    context = _client_context(pki, client=pki.client)
    async with _tls_server(rest_ssl_context(settings, clock=lambda: now[0])) as port:
        rotated = pki.ca.issue_cert("127.0.0.1", common_name="server-2")
        pki.install_server_cert(rotated)
        now[0] = 5.0
        assert await asyncio.to_thread(_handshake, port, context) == first
        now[0] = 10.0
        assert await asyncio.to_thread(_handshake, port, context) == _serial(rotated)


# -- settings ----------------------------------------------------------


def test_client_auth_without_a_ca_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="needs ca_file"):
        TlsSettings(
            cert_file=pki.directory / "tls.crt",
            key_file=pki.directory / "tls.key",
            client_auth="require",
        )


def test_settings_accept_modelmesh_camel_case(pki: Pki) -> None:
    settings = TlsSettings.model_validate(
        {
            "certFile": str(pki.directory / "tls.crt"),
            "keyFile": str(pki.directory / "tls.key"),
            "caFile": str(pki.directory / "ca.crt"),
            "clientAuth": "optional",
        }
    )
    assert settings.client_auth == "optional"


def test_a_key_that_does_not_match_the_certificate_is_refused_at_start(pki: Pki) -> None:
    other = pki.ca.issue_cert("127.0.0.1")
    (pki.directory / "tls.key").write_bytes(_pkcs8(other))
    with pytest.raises(ValueError, match="is not the key of"):
        grpc_server_credentials(pki.server_settings())
    with pytest.raises(ValueError, match="is not the key of"):
        rest_ssl_context(pki.server_settings())


async def test_uvicorn_serves_with_the_context_and_picks_up_a_rotation(pki: Pki) -> None:
    """The way a front end plugs it in: uvicorn's ``ssl_context_factory``."""

    async def hello(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    context = rest_ssl_context(pki.server_settings("require"))
    config = uvicorn.Config(
        Starlette(routes=[Route("/", hello)]),
        log_config=None,
        lifespan="off",
        ssl_context_factory=lambda _config, _default: context,
    )
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        client = _client_context(pki, client=pki.client)
        async with httpx.AsyncClient(verify=client) as http:
            assert (await http.get(f"https://127.0.0.1:{port}/")).text == "hello"
            rotated = pki.ca.issue_cert("127.0.0.1", common_name="server-2")
            pki.install_server_cert(rotated)
            assert (await http.get(f"https://127.0.0.1:{port}/")).text == "hello"  # kept alive
        assert await asyncio.to_thread(_handshake, port, client, alpn="http/1.1") == _serial(
            rotated
        )
        async with httpx.AsyncClient(verify=_client_context(pki, client=None)) as anonymous:
            with pytest.raises(httpx.TransportError):
                await anonymous.get(f"https://127.0.0.1:{port}/")
    finally:
        server.should_exit = True
        await serving
        sock.close()


# -- certificate dates -------------------------------------------------


@pytest.mark.parametrize(
    ("not_before", "not_after", "expected"),
    [
        (datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 3, 4, 5, 6, tzinfo=UTC),
         "expired on 2021-03-04 05:06 UTC"),
        (datetime(2999, 1, 2, 3, 4, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC),
         "is not valid before 2999-01-02 03:04 UTC"),
    ],
    ids=["expired", "not-yet-valid"],
)  # fmt: skip
def test_an_out_of_date_certificate_is_named_with_its_date(
    pki: Pki, not_before: datetime, not_after: datetime, expected: str
) -> None:
    pki.install_server_cert(
        pki.ca.issue_cert("127.0.0.1", not_before=not_before, not_after=not_after)
    )
    cert_file = pki.server_settings().cert_file
    problem = certificate_date_problem(cert_file)
    assert problem == f"TLS certificate {cert_file} {expected}"


def test_a_certificate_in_date_or_unreadable_has_no_date_problem(pki: Pki) -> None:
    assert certificate_date_problem(pki.server_settings().cert_file) is None
    assert certificate_date_problem(pki.directory / "missing.crt") is None
    # Checked against the time given (trustme's certificates last until 3000).
    later = datetime(3001, 1, 1, tzinfo=UTC)
    assert "expired on" in (
        certificate_date_problem(pki.server_settings().cert_file, now=later) or ""
    )


async def test_a_rotation_to_an_expired_certificate_is_served_with_a_warning(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with _grpc_server(grpc_server_credentials(pki.server_settings())) as port:
        expired = pki.ca.issue_cert(
            "127.0.0.1",
            not_before=datetime(2020, 1, 1, tzinfo=UTC),
            not_after=datetime(2021, 1, 1, tzinfo=UTC),
        )
        pki.install_server_cert(expired)
        with caplog.at_level(logging.WARNING, logger="meshserve.security._tls"):
            async with _channel(port, _channel_credentials(pki, pki.client)) as channel:
                # The client refuses the expired certificate; the server warned.
                with pytest.raises(grpc.aio.AioRpcError):
                    await _call(channel)
    (warning,) = [r.getMessage() for r in caplog.records if "expired on" in r.getMessage()]
    assert str(pki.server_settings().cert_file) in warning and "(reloaded)" in warning
    assert "PRIVATE KEY" not in caplog.text
