"""`meshserve runtime` as a separate process, driven by real clients."""

from __future__ import annotations

import pathlib
import stat
import subprocess
import sys
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol._pb import model_runtime_pb2_grpc as spi_grpc
from tests._examples import assert_outputs_match, iris_rows, library_predictions, model_type
from tests._processes import meshserve, wait_for_line
from tests.integration._proc import listening_tcp_ports

pytestmark = pytest.mark.integration

PRELOADED = "xgboost-ubj"


@pytest.fixture(scope="module")
def runtime_address(example_models: dict[str, pathlib.Path]) -> Iterator[str]:
    """A `meshserve runtime` on a free loopback port, pickle allowed, one model preloaded."""
    preload = f"{PRELOADED}:xgboost:{example_models[PRELOADED]}"
    args = ["runtime", "--listen", "127.0.0.1:0", "--allow-pickle", "--model", preload]
    with meshserve(args) as proc:
        match = wait_for_line(proc, r"listening on (127\.0\.0\.1:\d+)")
        yield match.group(1)


def _load_all(address: str, example_models: dict[str, pathlib.Path]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = spi_grpc.ModelRuntimeStub(channel)
        for name, path in example_models.items():
            if name == PRELOADED:
                continue
            reply = stub.loadModel(
                spi.LoadModelRequest(modelId=name, modelType=model_type(name), modelPath=str(path))
            )
            assert reply.sizeInBytes > 0


def _infer(
    client: triton.InferenceServerClient, name: str, rows: np.ndarray
) -> dict[str, np.ndarray]:
    if model_type(name) == "onnx":
        tensor = triton.InferInput("float_input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows.astype(np.float32))
    else:
        tensor = triton.InferInput("input-0", list(rows.shape), "FP64")
        tensor.set_data_from_numpy(rows)
    result = client.infer(name, [tensor])
    response = result.get_response()
    assert response.model_name == name
    return {out.name: result.as_numpy(out.name) for out in response.outputs}


def test_tritonclient_infers_every_example_model(
    runtime_address: str, example_models: dict[str, pathlib.Path]
) -> None:
    _load_all(runtime_address, example_models)
    client = triton.InferenceServerClient(runtime_address)
    assert client.is_server_live()
    assert client.is_server_ready()
    rows = iris_rows(6)
    for name, path in example_models.items():
        assert client.is_model_ready(name), name
        got = _infer(client, name, rows)
        assert_outputs_match(got, library_predictions(name, path, rows))


def test_tritonclient_reads_metadata(runtime_address: str) -> None:
    client = triton.InferenceServerClient(runtime_address)
    server = client.get_server_metadata()
    assert server.name == "meshserve-runtime"
    metadata = client.get_model_metadata(PRELOADED)
    assert metadata.name == PRELOADED
    assert [(i.name, i.datatype, list(i.shape)) for i in metadata.inputs] == [
        ("input-0", "FP32", [-1, 4])
    ]
    assert [o.name for o in metadata.outputs] == ["predict", "predict_proba"]


def test_errors_reach_tritonclient_with_their_status(runtime_address: str) -> None:
    client = triton.InferenceServerClient(runtime_address)
    assert not client.is_model_ready("nope")
    tensor = triton.InferInput("input-0", [1, 4], "FP64")
    tensor.set_data_from_numpy(iris_rows(1))
    with pytest.raises(InferenceServerException) as missing:
        client.infer("nope", [tensor])
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    assert "nope" in missing.value.message()

    wrong = triton.InferInput("input-0", [1, 3], "FP64")
    wrong.set_data_from_numpy(iris_rows(1)[:, :3])
    with pytest.raises(InferenceServerException) as shape:
        client.infer(PRELOADED, [wrong])
    assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "input-0" in shape.value.message()
    # The process keeps serving after bad requests.
    assert _infer(client, PRELOADED, iris_rows(2))["predict"].shape == (2,)


def test_load_errors_keep_modelmesh_codes(runtime_address: str, tmp_path: pathlib.Path) -> None:
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"garbage")
    with grpc.insecure_channel(runtime_address) as channel:
        stub = spi_grpc.ModelRuntimeStub(channel)
        with pytest.raises(grpc.RpcError) as unknown:
            stub.loadModel(spi.LoadModelRequest(modelId="x", modelType="pmml", modelPath="/x"))
        assert unknown.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as broken:
            stub.loadModel(
                spi.LoadModelRequest(modelId="b", modelType="onnx", modelPath=str(corrupt))
            )
        assert broken.value.code() is grpc.StatusCode.INTERNAL
        assert "broken.onnx" in (broken.value.details() or "")
        status = stub.runtimeStatus(spi.RuntimeStatusRequest())
        assert status.status == spi.RuntimeStatusResponse.READY
        assert status.maxLoadingConcurrency == 1


def test_runtime_on_a_unix_socket_has_mode_0600_and_no_tcp_port(tmp_path: pathlib.Path) -> None:
    socket = tmp_path / "rt.sock"
    with meshserve(["runtime", "--listen", f"unix:{socket}"]) as proc:
        wait_for_line(proc, r"listening on unix:")
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        assert listening_tcp_ports(proc.pid) == []
        with grpc.insecure_channel(f"unix:{socket}") as channel:
            status = spi_grpc.ModelRuntimeStub(channel).runtimeStatus(spi.RuntimeStatusRequest())
        assert status.status == spi.RuntimeStatusResponse.READY
    assert not socket.exists()


@pytest.mark.parametrize("listen", ["0.0.0.0:8001", "192.168.1.1:80"])
def test_runtime_refuses_network_addresses(listen: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "meshserve", "runtime", "--listen", listen],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "never on a network interface" in proc.stderr
