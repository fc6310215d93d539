"""What every client command shares: where the instance is, one gRPC channel,
and how failures become exit codes.

Exit codes (the same for every client command)::

    0  ok
    1  the server answered with an error, or the thing asked about does not
       exist, or a --sync load failed         "error: <STATUS>: <details>"
    2  usage error (click's own)
    3  cannot connect to the endpoint          "error: cannot connect to <endpoint>: ..."

UNAVAILABLE and DEADLINE_EXCEEDED are 3 only when they come from the
transport (no meshserve error trailer) and, for a deadline, nothing answers
a probe afterwards: a call that connected and then outlasted --timeout is 1.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import os
import pathlib
import re
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from typing import IO, Any, TypeVar, cast

import click
import grpc

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import grpc_predict_v2_pb2_grpc as v2_grpc
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from meshserve.protocol.status import ERROR_TYPE_KEY

__all__ = [
    "EXIT_CODES_EPILOG",
    "CallOptions",
    "CannotConnectError",
    "ClientTls",
    "Connection",
    "ExitCode",
    "ServerError",
    "client_command",
    "connect",
    "default_data_dir",
    "endpoints_file_entry",
    "pass_call_options",
    "pass_connection",
    "tls_hint",
]

DEFAULT_GRPC_ENDPOINT = "127.0.0.1:8033"
DEFAULT_TIMEOUT_S = 120.0
# How long the reachability probe after a DEADLINE_EXCEEDED may take; not
# bounded by --timeout, since a tiny --timeout would make any server look down.
_PROBE_S = 2.0
# settings' default data_dir (tests/unit/cli/test_cli_startup.py checks it):
# `meshserve up` writes endpoints.json there.
DEFAULT_DATA_DIR = pathlib.Path(".meshserve")
ENDPOINTS_FILE = DEFAULT_DATA_DIR / "endpoints.json"

# Codes that may mean "never reached the server" (see Connection._error).
_CONNECT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ExitCode(enum.IntEnum):
    OK = 0
    SERVER_ERROR = 1
    USAGE = 2
    CANNOT_CONNECT = 3


EXIT_CODES_EPILOG = (
    "\b\nExit codes:\n"
    "  0  ok\n"
    "  1  the server answered with an error, or the model/vmodel does not exist\n"
    "     (NOT_FOUND), or a --sync load failed: 'error: <STATUS>: <details>'\n"
    "  2  usage error\n"
    "  3  cannot connect to the endpoint"
)


class ServerError(click.ClickException):
    """Exit 1: the server answered, and the answer is a failure."""

    exit_code = ExitCode.SERVER_ERROR

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CannotConnectError(ServerError):
    """Exit 3: no answer from the endpoint at all."""

    exit_code = ExitCode.CANNOT_CONNECT

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"cannot connect to {endpoint}: {reason}")


def endpoints_file_entry(key: str, *, path: pathlib.Path = ENDPOINTS_FILE) -> str | None:
    """The ``key`` entry of an endpoints file (./.meshserve/endpoints.json
    by default), if that file has one. CannotConnectError if the file is
    stale: the ``meshserve up`` that wrote it is no longer running."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    _refuse_stale(path, data)
    value = data.get(key)
    return value if isinstance(value, str) and value else None


def default_data_dir() -> pathlib.Path:
    """The settings' ``data_dir`` where no --data-dir was given:
    MESHSERVE_DATA_DIR (any case, as the settings read it), else
    ./.meshserve. Without building the settings: importing them (pydantic)
    costs a client command more than its call."""
    for name, value in os.environ.items():
        if name.upper() == "MESHSERVE_DATA_DIR":
            return pathlib.Path(value)
    return DEFAULT_DATA_DIR


def _refuse_stale(path: pathlib.Path, data: dict[str, Any]) -> None:
    """An ``up`` killed (or crashed) leaves its endpoints file behind; its
    recorded pid names it, so the failure says so rather than "connection
    refused" at an address nothing serves."""
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or _running(pid):
        return
    raise CannotConnectError(
        str(data.get("grpc") or path),
        f"the endpoints file {path} names a `meshserve up` (pid {pid}) that is no longer "
        "running; start `meshserve up`, or pass --endpoint HOST:PORT",
    )


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class ClientTls:
    """The files a client connects with over TLS (--tls-ca, --tls-cert,
    --tls-key), for gRPC and REST alike."""

    ca: pathlib.Path
    """The CA the server's certificate chains to."""
    cert: pathlib.Path | None = None
    """A client certificate, for servers that ask for one (with ``key``)."""
    key: pathlib.Path | None = None

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context for HTTPS: trusts ``ca`` only, presents ``cert``."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.cert is not None:
            context.load_cert_chain(self.cert, self.key)
        return context


def tls_hint(reason: str, *, tls: ClientTls | None, url: str | None = None) -> str:
    """What a failure to connect (``reason``) likely says about TLS, to
    append to its message ("" when nothing suggests TLS). ``url``: the REST
    URL, when the failure was on REST."""
    lowered = reason.lower()
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        if tls is None:
            return (
                " (the server's certificate is not signed by a CA this machine trusts: "
                "pass --tls-ca with the CA of its certificate)"
            )
        return f" (the server's certificate is not signed by --tls-ca {tls.ca})"
    if any(sign in lowered for sign in _PLAINTEXT_TO_TLS):
        if url is not None and url.startswith("http://"):
            need = "an https:// URL" + (" and --tls-ca with its CA" if tls is None else "")
        elif tls is None:
            need = "--tls-ca with the CA of its certificate"
        else:
            return ""
        return f" (the connection closed during the handshake: is the server using TLS? use {need})"
    if tls is not None and any(sign in lowered for sign in _TLS_TO_PLAINTEXT):
        return " (no TLS handshake from the server: is it serving plaintext? drop --tls-ca)"
    return ""


# What a plaintext client sees from a TLS server: gRPC's transport reports
# the server hanging up on the HTTP/2 preface; http.client a connection
# closed with no reply.
_PLAINTEXT_TO_TLS = ("socket closed", "remote end closed connection", "connection reset")
# And a TLS client from a plaintext server.
_TLS_TO_PLAINTEXT = ("wrong_version_number", "wrong version number")

_Rpc = Callable[..., Any]  # a unary method of a generated (untyped) stub


class Connection:
    """One sync gRPC channel to an instance, with its three services."""

    def __init__(
        self,
        *,
        endpoint: str,
        timeout_s: float,
        tls: ClientTls | None = None,
        token: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.tls = tls
        """The TLS files the client connects with (None: plaintext), for
        other transports to the same server (REST)."""
        self._channel = (
            grpc.insecure_channel(endpoint)
            if tls is None
            else grpc.secure_channel(endpoint, tls.grpc_credentials())
        )
        self.auth_metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        """Metadata that authenticates a call (servers with auth.enabled)."""
        self.mm = mm_grpc.ModelMeshStub(self._channel)
        self.admin = admin_grpc.AdminStub(self._channel)
        self.v2 = v2_grpc.GRPCInferenceServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def call(self, rpc: _Rpc, request: Any, *, metadata: Sequence[tuple[str, str]] = ()) -> Any:
        """Invoke a unary stub method; failures become ServerError or
        CannotConnectError, whose exit codes click applies."""
        try:
            return rpc(
                request,
                timeout=self.timeout_s,
                metadata=(*metadata, *self.auth_metadata) or None,
            )
        except grpc.RpcError as exc:
            raise self._error(exc) from None

    def stream(self, rpc: _Rpc, request: Any) -> Iterator[Any]:
        """The replies of a server-streaming stub method, for as long as the
        server sends them (no deadline: a watch lasts until the caller stops
        it); failures as in :meth:`call`."""
        replies = rpc(request, metadata=self.auth_metadata or None)
        try:
            yield from replies
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        finally:
            replies.cancel()

    def listing(self, streamed: _Rpc, unary: _Rpc, request: Any) -> list[Any]:
        """The replies of a listing streamed in chunks (``Admin.Stream*``)
        within --timeout, so that no message limit is reached however long
        it is; from a server that predates those calls, the one reply of
        its unary twin. Failures as in :meth:`call`."""
        replies = streamed(request, timeout=self.timeout_s, metadata=self.auth_metadata or None)
        try:
            return list(replies)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED and not _from_meshserve(exc):
                return [self.call(unary, request)]
            raise self._error(exc) from None

    def _error(self, exc: grpc.RpcError) -> ServerError:
        # On the sync stack the raised error is also the grpc.Call.
        code: grpc.StatusCode = exc.code()
        message = f"{code.name}: {exc.details() or ''}"
        if code not in _CONNECT_CODES or _from_meshserve(exc):
            return ServerError(message)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and self._reachable():
            return ServerError(message)  # connected, then the call outlasted --timeout
        return CannotConnectError(self.endpoint, message + tls_hint(message, tls=self.tls))

    def _reachable(self) -> bool:
        """Whether anything answers on the channel: a client-side deadline
        looks the same whether the connection or the call took too long."""
        try:
            self.v2.ServerLive(v2.ServerLiveRequest(), timeout=_PROBE_S)
        except grpc.RpcError as exc:
            return exc.code() not in _CONNECT_CODES
        return True


def _from_meshserve(exc: grpc.RpcError) -> bool:
    """A meshserve server names the error type in a trailer; a transport
    failure has none."""
    return any(key == ERROR_TYPE_KEY for key, _ in exc.trailing_metadata() or ())


@contextmanager
def connect(
    *,
    endpoint: str | None,
    timeout_s: float,
    tls: ClientTls | None = None,
    token: str | None = None,
) -> Iterator[Connection]:
    """A connection to ``endpoint``, or to the default one: the ``grpc`` entry
    of ./.meshserve/endpoints.json, else 127.0.0.1:8033."""
    target = endpoint or endpoints_file_entry("grpc") or DEFAULT_GRPC_ENDPOINT
    connection = Connection(endpoint=target, timeout_s=timeout_s, tls=tls, token=token)
    try:
        yield connection
    finally:
        connection.close()


_Command = TypeVar("_Command", bound=Callable[..., None])


@dataclasses.dataclass(frozen=True, slots=True)
class CallOptions:
    """How a client command calls a server, whichever it is: the deadline,
    TLS and the credential (--timeout, --tls-ca/--tls-cert/--tls-key, --token)."""

    timeout_s: float
    tls: ClientTls | None = None
    token: str | None = None

    def connect(self, endpoint: str | None) -> ContextManager[Connection]:
        """A connection to ``endpoint`` (None: the default one, see :func:`connect`)."""
        return connect(endpoint=endpoint, timeout_s=self.timeout_s, tls=self.tls, token=self.token)


_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class _Duration(click.ParamType[float]):
    """Seconds: a number, or a number with a unit as kubectl takes it
    (500ms, 30s, 2m, 1h)."""

    name = "duration"
    _FORM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?")

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = self._FORM.fullmatch(str(value).strip())
            if match is None:
                self.fail(f"{value!r} is not a duration (e.g. 30, 30s, 500ms, 2m)", param, ctx)
            seconds = float(match[1]) * _UNIT_SECONDS[match[2] or "s"]
        if seconds <= 0:
            self.fail(f"{value!r}: must be more than 0", param, ctx)
        return seconds


_CALL_OPTIONS = (
    click.option(
        "--timeout",
        type=_Duration(),
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        metavar="DURATION",
        help="Deadline of each call (a --sync load must fit in it); seconds, or 500ms, 30s, 2m.",
    ),
    click.option(
        "--tls-ca",
        envvar="MESHSERVE_TLS_CA",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Connect with TLS, trusting this CA (PEM; env MESHSERVE_TLS_CA).",
    ),
    click.option(
        "--tls-cert",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Client certificate (PEM) for servers that require one; with --tls-key.",
    ),
    click.option(
        "--tls-key",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Private key of --tls-cert (PEM).",
    ),
    click.option(
        "--token",
        envvar="MESHSERVE_TOKEN",
        default=None,
        help="Bearer token for servers with auth.enabled (env MESHSERVE_TOKEN).",
    ),
)


def pass_call_options(command: _Command) -> _Command:
    """Add --timeout, the TLS options and --token to a command and hand it a
    ``call_options: CallOptions`` instead, for commands that find their
    endpoint themselves."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        timeout: float,
        tls_ca: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        token: str | None,
        **kwargs: Any,
    ) -> None:
        options = CallOptions(
            timeout_s=timeout, tls=_client_tls(ca=tls_ca, cert=tls_cert, key=tls_key), token=token
        )
        command(*args, call_options=options, **kwargs)

    decorated: Callable[..., None] = wrapper
    for option in reversed(_CALL_OPTIONS):
        decorated = option(decorated)
    return cast(_Command, decorated)


def pass_connection(command: _Command) -> _Command:
    """Add ``--endpoint``, ``--timeout``, the TLS options and ``--token`` to a
    command and hand it a ``conn: Connection`` (closed when the command
    returns) instead."""

    @click.option(
        "--endpoint",
        envvar="MESHSERVE_ENDPOINT",
        default=None,
        metavar="HOST:PORT",
        help="gRPC address of an instance (env MESHSERVE_ENDPOINT)  [default: the 'grpc' "
        f"entry of ./{ENDPOINTS_FILE} if it exists, else {DEFAULT_GRPC_ENDPOINT}]",
    )
    @pass_call_options
    @functools.wraps(command)
    def wrapper(*args: Any, endpoint: str | None, call_options: CallOptions, **kwargs: Any) -> None:
        with call_options.connect(endpoint) as conn:
            command(*args, conn=conn, **kwargs)

    return cast(_Command, wrapper)


def _client_tls(*, ca: str | None, cert: str | None, key: str | None) -> ClientTls | None:
    if (cert is None) != (key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if ca is None:
        if cert is not None:
            raise click.UsageError("--tls-cert needs --tls-ca (the server's CA)")
        return None
    return ClientTls(
        ca=pathlib.Path(ca),
        cert=pathlib.Path(cert) if cert else None,
        key=pathlib.Path(key) if key else None,
    )


def client_command(
    group: click.Group, name: str | None = None
) -> Callable[[Callable[..., None]], click.Command]:
    """``group.command`` with the exit codes in the help epilog."""
    return group.command(name, epilog=EXIT_CODES_EPILOG)
