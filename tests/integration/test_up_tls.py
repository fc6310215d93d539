"""TLS on `meshserve up`: gRPC, REST, the CLI, client certificates, a
certificate rotated with no restart, and mutual TLS between instances."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from tritonclient.utils import InferenceServerException

from meshserve.protocol import frames
from meshserve.protocol.frames import Frame, Kind
from tests._processes import meshserve, read_until
from tests.integration._mesh import make_model
from tests.integration._resources import ISVC, cli, status_field
from tests.integration._up import Up, metric_total, run_up, wait_until

pytestmark = pytest.mark.timeout(180)


@dataclass
class Pki:
    ca: trustme.CA
    dir: pathlib.Path

    @property
    def ca_file(self) -> pathlib.Path:
        return self.dir / "ca.pem"

    def issue(self, name: str, *identities: str) -> tuple[pathlib.Path, pathlib.Path]:
        """Write a leaf certificate and its PKCS8 key; return their paths."""
        leaf = self.ca.issue_cert(*identities)
        cert, key = self.dir / f"{name}.crt", self.dir / f"{name}.key"
        write_leaf(leaf, cert, key)
        return cert, key


def write_leaf(leaf: trustme.LeafCert, cert: pathlib.Path, key: pathlib.Path) -> None:
    private = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    pkcs8 = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first, then the certificate: a reader never sees a new certificate
    # with an old key for longer than the write takes.
    key.write_bytes(pkcs8)
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = trustme.CA()
    directory = tmp_path_factory.mktemp("pki")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return Pki(ca=ca, dir=directory)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_model(tmp_path_factory.mktemp("model") / "m.skops")


def _tls_args(pki: Pki, cert: pathlib.Path, key: pathlib.Path) -> list[str]:
    return ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(pki.ca_file)]


def _infer(
    address: str,
    model: str,
    *,
    ca: pathlib.Path | None,
    cert: pathlib.Path | None = None,
    key: pathlib.Path | None = None,
) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(
        url=address,
        ssl=ca is not None,
        root_certificates=str(ca) if ca else None,
        certificate_chain=str(cert) if cert else None,
        private_key=str(key) if key else None,
    )
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        output = client.infer(model, [tensor], client_timeout=30).as_numpy("predict")
        assert output is not None
        return output
    finally:
        client.close()


def _data_port_answer(address: str, pki: Pki, cert: pathlib.Path, key: pathlib.Path) -> bytes:
    """What the data port at ``address`` answers a HELLO without the mesh
    secret, over TLS with a client certificate from the mesh's CA."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(cert, key)
    host, port = address.rsplit(":", 1)
    hello = Frame(Kind.HELLO, head=frames.encode_hello("not-the-mesh-token"))
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(b"".join(frames.encode_frame(hello)))
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    return answer


def _served_serial(address: str, ca: pathlib.Path) -> int:
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshserve", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def tls_up(pki: Pki, model: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    cert, key = pki.issue("server", "127.0.0.1", "localhost")
    data = tmp_path_factory.mktemp("tls-up")
    config = data / "config.yaml"
    config.write_text("tls:\n  reloadIntervalS: 0\n")
    register = data / "models.yaml"
    register.write_text(f"models:\n  - {{name: m, type: sklearn, path: {model}}}\n")
    claim = data / "pvc" / "claim"
    claim.mkdir(parents=True)
    shutil.copy(model, claim / "m.skops")
    args = [*_tls_args(pki, cert, key), "--config", str(config), "--register", str(register)]
    args += ["--pvc-root", str(data / "pvc")]
    with run_up(data / "data", args=args) as up:
        yield up


def _request_file(directory: pathlib.Path) -> pathlib.Path:
    """A v2 REST body for the test model (one row of 4 FP32 features)."""
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
    path = directory / "request.json"
    path.write_text(json.dumps(body))
    return path


def test_grpc_rest_and_the_cli_speak_tls(tls_up: Up, pki: Pki) -> None:
    assert _infer(tls_up.grpc, "m", ca=pki.ca_file).shape == (1,)
    with pytest.raises(InferenceServerException):
        _infer(tls_up.grpc, "m", ca=None)  # plaintext is refused
    endpoints = json.loads((tls_up.data_dir / "endpoints.json").read_text())
    assert endpoints["rest"].startswith("https://")
    trusting = ssl.create_default_context(cafile=str(pki.ca_file))
    ready = httpx.get(f"{endpoints['rest']}/v2/health/ready", verify=trusting, timeout=10)
    assert ready.status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{endpoints['rest']}/v2/health/ready", verify=True, timeout=10)
    listed = _cli("models", "list", "--endpoint", tls_up.grpc, "--tls-ca", str(pki.ca_file))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].startswith("m ")


def test_a_rotated_certificate_is_served_without_a_restart(tls_up: Up, pki: Pki) -> None:
    before = _served_serial(tls_up.grpc, pki.ca_file)
    leaf = pki.ca.issue_cert("127.0.0.1", "localhost")
    write_leaf(leaf, pki.dir / "server.crt", pki.dir / "server.key")
    expected = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).serial_number
    assert expected != before
    deadline = time.monotonic() + 20
    while _served_serial(tls_up.grpc, pki.ca_file) != expected:
        assert time.monotonic() < deadline, "the new certificate was not picked up"
        time.sleep(0.2)
    assert _infer(tls_up.grpc, "m", ca=pki.ca_file).shape == (1,)
    assert tls_up.proc.poll() is None


def test_required_client_certificates(
    pki: Pki, model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    cert, key = pki.issue("strict", "127.0.0.1")
    client_cert, client_key = pki.issue("client", "client@example.test")
    other = trustme.CA().issue_cert("intruder@example.test")
    intruder_cert, intruder_key = tmp_path / "intruder.crt", tmp_path / "intruder.key"
    write_leaf(other, intruder_cert, intruder_key)
    register = tmp_path / "models.yaml"
    register.write_text(f"models:\n  - {{name: m, type: sklearn, path: {model}}}\n")
    args = [*_tls_args(pki, cert, key), "--tls-client-auth", "require"]
    with run_up(tmp_path / "data", args=[*args, "--register", str(register)]) as up:
        with pytest.raises(InferenceServerException):
            _infer(up.grpc, "m", ca=pki.ca_file)
        with pytest.raises(InferenceServerException):
            _infer(up.grpc, "m", ca=pki.ca_file, cert=intruder_cert, key=intruder_key)
        served = _infer(up.grpc, "m", ca=pki.ca_file, cert=client_cert, key=client_key)
        assert served.shape == (1,)


def test_instances_forward_to_each_other_over_mutual_tls_and_the_mesh_secret(
    pki: Pki, model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    cert, key = pki.issue("mesh", "127.0.0.1", "localhost")
    # A client's certificate from the same CA, as any client under
    # clientAuth require holds one.
    client_cert, client_key = pki.issue("client", "client@example.test")
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0", *_tls_args(pki, cert, key)]
    args += ["--tls-client-auth", "require"]
    with meshserve(args) as proc:
        announced = read_until(proc, r"meshserve up: ready", 120)
        assert any(re.search(r"meshserve up: gRPC \S+ over TLS", line) for line in announced)
        endpoints = json.loads((data / "endpoints.json").read_text())
        assert endpoints["rest"].startswith("https://"), endpoints
        shared, instances = endpoints["grpc"], endpoints["instances"]
        client = {"ca": pki.ca_file, "cert": client_cert, "key": client_key}
        # On the internal ports the CA's certificate is not enough: peers
        # also prove they hold the mesh secret.
        for entry in instances:
            with pytest.raises(InferenceServerException) as refused:
                _infer(entry["internal"], "anything", **client)
            assert refused.value.status() == "StatusCode.UNAUTHENTICATED"
            assert "only other instances of this mesh" in str(refused.value)
        tls = ["--tls-ca", str(pki.ca_file), "--tls-cert", str(client_cert)]
        tls += ["--tls-key", str(client_key)]
        done = _cli(
            "models", "register", "shared", "--type", "sklearn", "--path", str(model),
            "--load-now", "--sync", "--endpoint", shared, *tls,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        status = _cli("models", "status", "shared", "-o", "json", "--endpoint", shared, *tls)
        (holder,) = [c["location"] for c in json.loads(status.stdout)["modelCopyInfos"]]
        (other,) = [entry for entry in instances if entry["id"] != holder]
        # Served by the instance holding the copy, through the other one.
        assert _infer(other["grpc"], "shared", **client).shape == (1,)
        assert metric_total(other["metrics"], "modelmesh_invoke_model_milliseconds_count") == 0
        # The forward went over the holder's data port, over mutual TLS.
        (held,) = [entry for entry in instances if entry["id"] == holder]
        logs = [log.read_text() for log in (data / "instances").glob("*/instance.log")]
        assert any(f"data link to {held['data']} open" in log for log in logs)
        # There too a certificate from the CA is not enough without the secret.
        assert _data_port_answer(held["data"], pki, client_cert, client_key)[4] == Kind.REFUSED


def test_starting_with_an_expired_certificate_warns_naming_the_file_and_the_date(
    pki: Pki, tmp_path: pathlib.Path
) -> None:
    expired = pki.ca.issue_cert(
        "127.0.0.1",
        not_before=datetime(2020, 1, 1, tzinfo=UTC),
        not_after=datetime(2021, 6, 7, 8, 9, tzinfo=UTC),
    )
    cert, key = tmp_path / "expired.crt", tmp_path / "expired.key"
    write_leaf(expired, cert, key)
    with run_up(tmp_path / "data", args=_tls_args(pki, cert, key)) as up:
        log = up.log.read_text()
    assert f"TLS certificate {cert} expired on 2021-06-07 08:09 UTC" in log
    assert "PRIVATE KEY" not in log


@pytest.mark.parametrize("command", ["up", "instance"])
def test_a_certificate_without_a_ca_is_a_usage_error(
    command: str, pki: Pki, tmp_path: pathlib.Path
) -> None:
    cert, key = pki.issue("no-ca", "127.0.0.1")
    args = [command, "--data-dir", str(tmp_path), "--tls-cert", str(cert), "--tls-key", str(key)]
    done = _cli(*args, "--grpc-port", "0", "--rest-port", "0", "--metrics-port", "0")
    assert done.returncode == 2, done.stderr
    assert "--tls-ca" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_infer_over_rest_uses_the_tls_options(tls_up: Up, pki: Pki, tmp_path: pathlib.Path) -> None:
    rest = json.loads((tls_up.data_dir / "endpoints.json").read_text())["rest"]
    request = str(_request_file(tmp_path))
    infer = ("infer", "m", "--input", request, "--rest-url", rest)
    served = _cli(*infer, "--tls-ca", str(pki.ca_file))
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["model_name"] == "m"
    # The same request over gRPC prints the same thing.
    over_grpc = _cli("infer", "m", "--input", request, "--endpoint", tls_up.grpc,
                     "--tls-ca", str(pki.ca_file))  # fmt: skip
    assert over_grpc.returncode == 0, over_grpc.stderr
    assert json.loads(over_grpc.stdout)["outputs"] == json.loads(served.stdout)["outputs"]


def test_a_client_is_told_when_tls_is_the_likely_problem(
    tls_up: Up, pki: Pki, tmp_path: pathlib.Path
) -> None:
    stranger = tmp_path / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    rest = json.loads((tls_up.data_dir / "endpoints.json").read_text())["rest"]
    request = str(_request_file(tmp_path))
    cases = {
        # No CA: plaintext gRPC to a TLS port is closed during the handshake.
        ("models", "list", "--endpoint", tls_up.grpc): "is the server using TLS? use --tls-ca",
        ("models", "list", "--endpoint", tls_up.grpc, "--tls-ca", str(stranger)): (
            f"not signed by --tls-ca {stranger}"
        ),
        ("infer", "m", "--input", request, "--rest-url", rest): "pass --tls-ca",
        ("infer", "m", "--input", request, "--rest-url", rest.replace("https:", "http:")): (
            "is the server using TLS? use an https:// URL and --tls-ca"
        ),
        ("infer", "m", "--input", request, "--rest-url", rest, "--tls-ca", str(stranger)): (
            f"not signed by --tls-ca {stranger}"
        ),
    }
    for args, hint in cases.items():
        done = _cli(*args, "--timeout", "10")
        assert done.returncode == 3, (args, done.stderr)
        assert hint in done.stderr, (args, done.stderr)


def test_status_urls_say_how_to_reach_a_tls_server(
    tls_up: Up, pki: Pki, tmp_path: pathlib.Path
) -> None:
    """REST URLs are https://; gRPC endpoints stay grpc:// (as ModelMesh
    Serving writes them, TLS or not: the client's channel decides TLS)."""
    tls = ("--tls-ca", str(pki.ca_file))
    document = ISVC.format(name="secure", format="sklearn", uri="pvc://claim/m.skops")
    applied = cli(tls_up, "apply", "-f", "-", *tls, stdin=document)
    assert applied.returncode == 0, applied.stderr

    def loaded() -> dict[str, Any] | None:
        got = cli(tls_up, "get", "isvc", "secure", "-o", "json", *tls)
        assert got.returncode == 0, got.stderr
        status: dict[str, Any] = json.loads(got.stdout).get("status", {})
        return status if status_field(status, "activeModelState") == "Loaded" else None

    status = wait_until(loaded, timeout=60, what="the InferenceService loaded", interval=0.5)
    predictor = status["components"]["predictor"]
    assert predictor["restUrl"].startswith("https://"), status
    assert predictor["grpcUrl"] == status["url"] == f"grpc://{tls_up.grpc}", status
    trusting = ssl.create_default_context(cafile=str(pki.ca_file))
    ready = httpx.get(predictor["restUrl"] + "/ready", verify=trusting, timeout=10)
    assert ready.status_code == 200, ready.text
