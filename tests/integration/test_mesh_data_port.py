"""Forwarded inference over the data port, between real instances on etcd.

Three instances: 0 and 1 with the data plane (the default), 2 with it off
(``mesh.dataPlane: false``, as a peer of an older version has none). A
forward between 0 and 1 goes over their data ports; one to or from 2 over
the internal gRPC port, as before. The data port refuses a connection
without the mesh secret, and garbage, and serves on.
"""

from __future__ import annotations

import functools
import json
import pathlib
import socket
import struct
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from meshserve.protocol import frames
from meshserve.protocol.frames import Frame, Kind
from meshserve.security import MeshSecret, new_mesh_secret_text
from tests.integration._etcd import EtcdServer
from tests.integration._mesh import Mesh, make_model, run_mesh, wait_until
from tests.integration._up import metric_total

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MODELS = [f"dp-{i}" for i in range(6)]
WITHOUT = 2
"""The instance with the data plane off."""


@pytest.fixture(scope="module")
def secret_file(work: pathlib.Path) -> pathlib.Path:
    path = work / "mesh.secret"
    path.write_text(new_mesh_secret_text())
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def secret(secret_file: pathlib.Path) -> MeshSecret:
    """The mesh's secret, as its instances hold it."""
    return MeshSecret.from_file(secret_file)


@pytest.fixture(scope="module")
def mesh(etcd: EtcdServer, work: pathlib.Path, secret_file: pathlib.Path) -> Iterator[Mesh]:
    settings = {
        # No scale-up or load spreading: each model keeps the one copy it has.
        "scaleupRpmThreshold": 10**7,
        "rebalanceMinRpm": 10**7,
        "secretFile": str(secret_file),
    }
    with run_mesh(etcd, work / "mesh", instances=2, mesh_settings=settings) as running:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MESHSERVE_MESH__DATA_PLANE", "false")
            running.start(WITHOUT)
        model = make_model(work / "models" / "model.skops")
        for name in MODELS:
            running.management(0).register(
                name, type="sklearn", path=model, load_now=True, sync=True
            )
        for name in MODELS:
            wait_until(functools.partial(running.loaded_on, 0, name), 60, f"{name} loaded")
        yield running


def _data_address(mesh: Mesh, index: int) -> str:
    endpoints = json.loads((mesh.instances[index].data_dir / "endpoints.json").read_text())
    address: str = endpoints["instances"][0]["data"]
    return address


def _log(mesh: Mesh, index: int) -> str:
    return (mesh.instances[index].data_dir / "instance.log").read_text(errors="replace")


def _holders(mesh: Mesh) -> dict[str, int]:
    """model -> the index of the instance holding its one copy."""
    by_id = {instance.instance_id: index for index, instance in mesh.instances.items()}
    holders = {}
    for name in MODELS:
        (holder,) = mesh.loaded_on(0, name)
        holders[name] = by_id[holder]
    return holders


def _expected(mesh: Mesh, holder: int, name: str) -> np.ndarray:
    return mesh.infer(holder, name)


def test_only_instances_with_the_data_plane_publish_a_data_port(mesh: Mesh) -> None:
    assert _data_address(mesh, 0) and _data_address(mesh, 1)
    assert _data_address(mesh, WITHOUT) == ""


def test_forwards_between_data_ports_answer_as_the_holder_does_and_others_use_grpc(
    mesh: Mesh,
) -> None:
    holders = _holders(mesh)
    # Placement spread the copies: some on a data-port pair, some on the other.
    assert {h for h in holders.values()} == {0, 1, WITHOUT}, holders
    for name, holder in holders.items():
        expected = _expected(mesh, holder, name)
        for forwarder in mesh.instances:
            if forwarder != holder:
                np.testing.assert_array_equal(mesh.infer(forwarder, name), expected)
    # A REST request is forwarded over the data port too (re-encoded once).
    name = next(n for n, h in holders.items() if h == 0)
    rest = _rest_infer(mesh, 1, name)
    np.testing.assert_array_equal(rest, _expected(mesh, 0, name))
    # 0 and 1 forwarded to each other over their data ports.
    for forwarder, holder in ((0, 1), (1, 0)):
        assert f"data link to {_data_address(mesh, holder)} open" in _log(mesh, forwarder)
    # The instance without the data plane opened none, and was forwarded to
    # over gRPC (it has no data port to open a link to).
    assert "data link to" not in _log(mesh, WITHOUT)


def _rest_infer(mesh: Mesh, index: int, name: str) -> np.ndarray:
    body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 8}]}
    request = urllib.request.Request(
        f"{mesh.instances[index].rest}/v2/models/{name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        outputs = json.loads(reply.read())["outputs"]
    (predict,) = [o for o in outputs if o["name"] == "predict"]
    return np.asarray(predict["data"])


def _connect(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the port sends before it closes the connection."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def _denied(mesh: Mesh, index: int) -> float:
    return metric_total(mesh.instances[index].metrics, "meshserve_auth_denied_total")


def test_a_connection_without_the_mesh_secret_or_with_garbage_is_refused_and_forwards_go_on(
    mesh: Mesh,
) -> None:
    address = _data_address(mesh, 0)
    denied_before = _denied(mesh, 0)
    wrong = MeshSecret("w" * 64, source="test")
    with _connect(address) as sock:
        hello = Frame(Kind.HELLO, head=frames.encode_hello(wrong.token))
        sock.sendall(b"".join(frames.encode_frame(hello)))
        refused = _until_closed(sock)
    assert refused[4] == Kind.REFUSED and b"mesh secret" in refused
    assert wrong.token.encode() not in refused
    # Garbage, and a frame that is no HELLO: closed, nothing served.
    for junk in (
        b"\x16\x03\x01\x02\x00" + b"\x00" * 64,  # a TLS ClientHello's start
        b"".join(frames.encode_frame(Frame(Kind.REQUEST, 1, b"", b"no hello"))),
    ):
        with _connect(address) as sock:
            sock.sendall(junk)
            assert Kind.WELCOME not in _until_closed(sock)[4:5]
    wait_until(lambda: _denied(mesh, 0) >= denied_before + 3, 10, "three refusals counted")
    assert "data port: refused a connection from" in _log(mesh, 0)
    assert wrong.token not in _log(mesh, 0)
    # The instance serves on, forwards over its data port included.
    holders = _holders(mesh)
    for name, holder in holders.items():
        if holder == 0:
            np.testing.assert_array_equal(mesh.infer(1, name), _expected(mesh, 0, name))
    assert mesh.ready(0)


def test_a_bad_frame_from_a_peer_holding_the_secret_closes_that_connection_only(
    mesh: Mesh, secret: MeshSecret
) -> None:
    address = _data_address(mesh, 1)
    hello = b"".join(frames.encode_frame(Frame(Kind.HELLO, head=frames.encode_hello(secret.token))))
    for bad in (
        # Over the size limit (judged by the length alone: nothing more is read).
        struct.pack("!IBII", 2**31, Kind.REQUEST, 1, 0),
        # A REQUEST whose head is not what it claims.
        b"".join(frames.encode_frame(Frame(Kind.REQUEST, 1, b"\x00\x01", b"body"))),
    ):
        with _connect(address) as sock:
            sock.sendall(hello)
            welcome = sock.recv(13)
            assert welcome[4] == Kind.WELCOME
            sock.sendall(bad)
            assert _until_closed(sock) == b""
    assert "data port: closing the connection from" in _log(mesh, 1)
    holders = _holders(mesh)
    for name, holder in holders.items():
        if holder == 1:
            np.testing.assert_array_equal(mesh.infer(0, name), _expected(mesh, 1, name))
