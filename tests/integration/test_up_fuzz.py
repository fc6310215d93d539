"""Fuzzing a real `meshserve up`: a few hundred hostile REST bodies and
mutated ModelInfer / management bytes get 4xx or INVALID_ARGUMENT-like
answers, never 5xx, INTERNAL or UNKNOWN; the server logs no traceback for
them and still serves a valid request after.

Bounded: a fixed number of examples per test (hypothesis, no deadline),
each request with a timeout.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol.datatypes import Datatype, numpy_dtype
from meshserve.protocol.inference import InferenceRequest, Tensor
from tests._examples import iris_rows
from tests._fuzz import FUZZ, mutated, rest_bodies
from tests.integration._up import Registration, Up, input_name, run_up

pytestmark = pytest.mark.integration

MODELS = ("sklearn-skops", "onnx")
INFER = "/inference.GRPCInferenceService/ModelInfer"
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def up(
    example_models: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("up-fuzz")
    register = [
        dataclasses.replace(Registration.example(name, example_models[name]), load_now=True)
        for name in MODELS
    ]
    with run_up(root / "data", register=register) as up:
        yield up


@pytest.fixture(scope="module")
def rest(up: Up) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=up.rest_url, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture(scope="module")
def channel(up: Up) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(up.grpc) as channel:
        yield channel


def _infer_bytes(name: str, rows: np.ndarray) -> bytes:
    """A serialized ModelInferRequest of ``rows`` for the example ``name``
    (raw contents; onnx takes FP32, the others FP64)."""
    datatype = Datatype.FP32 if name == "onnx" else Datatype.FP64
    tensor = Tensor(input_name(name), datatype, rows.astype(numpy_dtype(datatype)))
    request = InferenceRequest(model_name=name, inputs=[tensor])
    body: bytes = codecs.request_to_proto(request).SerializeToString()
    return body


def _valid_infer(name: str) -> bytes:
    return _infer_bytes(name, iris_rows(2))


def _grpc_code(channel: grpc.Channel, method: str, body: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(method)  # identity serializers: raw bytes
    try:
        call(body, timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK


def _serves(up: Up, rest: httpx.Client, channel: grpc.Channel) -> None:
    """The server is alive and answers a valid request on both ports."""
    assert up.proc.poll() is None, up.log_tail()
    for name in MODELS:
        assert _grpc_code(channel, INFER, _valid_infer(name)) is grpc.StatusCode.OK
        body = {
            "inputs": [
                {
                    "name": input_name(name),
                    "datatype": "FP32" if name == "onnx" else "FP64",
                    "shape": [1, 4],
                    "data": [5.1, 3.5, 1.4, 0.2],
                }
            ]
        }
        reply = rest.post(f"/v2/models/{name}/infer", json=body)
        assert reply.status_code == 200, reply.text


@FUZZ
@given(body=rest_bodies(), name=st.sampled_from(MODELS), binary=st.integers(0, 4))
def test_rest_bodies_never_get_a_5xx(
    up: Up, rest: httpx.Client, name: str, body: bytes, binary: int
) -> None:
    headers = {"content-type": "application/json"}
    if binary == 0:  # Triton's binary extension, its JSON length sometimes off
        headers["Inference-Header-Content-Length"] = str(max(0, len(body) - 3))
    reply = rest.post(f"/v2/models/{name}/infer", content=body, headers=headers)
    assert reply.status_code < 500, reply.text
    assert "error" in reply.json() or reply.status_code == 200


@FUZZ
@given(name=st.sampled_from(MODELS), data=st.data())
def test_mutated_model_infer_bytes_never_get_internal_or_unknown(
    channel: grpc.Channel, name: str, data: st.DataObject
) -> None:
    body = data.draw(mutated(_valid_infer(name)))
    code = _grpc_code(channel, INFER, body)
    assert code not in BAD_CODES


MANAGEMENT = {
    "/mmesh.ModelMesh/registerModel": mm.RegisterModelRequest(
        modelId="fuzz", modelInfo=mm.ModelInfo(type="sklearn", path="/nowhere")
    ),
    "/mmesh.ModelMesh/getModelStatus": mm.GetStatusRequest(modelId="onnx"),
    "/inference.GRPCInferenceService/ModelMetadata": v2.ModelMetadataRequest(name="onnx"),
}


@FUZZ
@given(method=st.sampled_from(sorted(MANAGEMENT)), data=st.data())
def test_mutated_management_bytes_never_get_internal_or_unknown(
    channel: grpc.Channel, method: str, data: st.DataObject
) -> None:
    body = data.draw(mutated(MANAGEMENT[method].SerializeToString()) | st.binary(max_size=32))
    assert _grpc_code(channel, method, body) not in BAD_CODES


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        (np.full((1, 4), np.nan), "NaN the estimator refuses"),
        (np.zeros((0, 4)), "zero rows"),
    ],
)
def test_a_model_refusing_its_input_is_a_400_and_invalid_argument(
    up: Up, rest: httpx.Client, channel: grpc.Channel, rows: np.ndarray, why: str
) -> None:
    name = "sklearn-skops"
    data = ["NaN" if np.isnan(v) else float(v) for v in rows.ravel()]
    body = {
        "inputs": [
            {"name": input_name(name), "datatype": "FP64", "shape": list(rows.shape), "data": data}
        ]
    }
    reply = rest.post(f"/v2/models/{name}/infer", json=body)
    assert reply.status_code in (200, 400), reply.text
    if reply.status_code == 400:
        assert "scikit-learn refused the input" in reply.json()["error"]
    code = _grpc_code(channel, INFER, _infer_bytes(name, rows))
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT)


def test_a_bin_routing_header_that_is_not_utf8_is_invalid_argument(channel: grpc.Channel) -> None:
    call = channel.unary_unary(INFER)
    with pytest.raises(grpc.RpcError) as info:
        call(_valid_infer("onnx"), metadata=(("mm-model-id-bin", b"\xff\xfe"),), timeout=TIMEOUT_S)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_after_the_fuzzing_the_server_serves_and_logged_no_traceback(
    up: Up, rest: httpx.Client, channel: grpc.Channel
) -> None:
    # Runs last in this module (pytest keeps file order): after every fuzz test.
    _serves(up, rest, channel)
    log = up.log.read_text(errors="replace")
    assert "Traceback" not in log, up.log_tail()
