"""ModelMesh Serving's example models, stored as upstream stores them, served
through InferenceServices on `meshserve up` (storageUri pvc://): the first
output a client reads has upstream's name, datatype and values, over
tritonclient gRPC and REST and over typed gRPC contents (how upstream's own
Go tests read ``Outputs[0].Contents.Fp32Contents``)."""

from __future__ import annotations

import json
import pathlib
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import grpc_predict_v2_pb2_grpc as v2_grpc
from tests import _upstream_models as upstream
from tests.integration._mesh import wait_until
from tests.integration._resources import apply, isvc
from tests.integration._resources import status as status_of
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(300)

LOAD_TIMEOUT_S = 90.0
CLAIM = "models"


@dataclass(frozen=True)
class Served:
    """One upstream example: its resource, what it is sent and what its library answers."""

    name: str
    format: str
    uri: str
    input_name: str
    rows: np.ndarray
    output: str
    datatype: str
    expected: np.ndarray


@pytest.fixture(scope="module")
def pvc(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("pvc")
    claim = root / CLAIM
    upstream.xgboost_mushroom(claim / "xgboost-mushroom")
    upstream.lightgbm_mushroom(claim / "lightgbm-mushroom")
    upstream.onnx_mnist_triton(claim / "onnx-mnist", config=True, versions=(1, 2))
    upstream.onnx_mnist_triton(claim / "onnx-mnist-bare", config=False)
    (claim / "sklearn-pickle").mkdir()
    (claim / "sklearn-pickle" / "model.joblib").write_bytes(pickle.dumps({"not": "loaded"}))
    return root


@pytest.fixture(scope="module")
def served(pvc: pathlib.Path) -> list[Served]:
    claim = pvc / CLAIM
    mushrooms = upstream.mushroom_rows(3, seed=21)
    images = upstream.mnist_images(2, seed=22)
    xgb_file = claim / "xgboost-mushroom" / "mushroom.json"
    lgb_file = claim / "lightgbm-mushroom" / "mushroom.bst"
    return [
        Served(
            "xgboost-mushroom", "xgboost", f"pvc://{CLAIM}/xgboost-mushroom/mushroom.json",
            "predict", mushrooms, "predict", "FP32", upstream.xgboost_predict(xgb_file, mushrooms),
        ),
        Served(
            "lightgbm-mushroom", "lightgbm", f"pvc://{CLAIM}/lightgbm-mushroom/mushroom.bst",
            "predict", mushrooms, "predict", "FP64", upstream.lightgbm_predict(lgb_file, mushrooms),
        ),
        Served(
            "onnx-mnist", "onnx", f"pvc://{CLAIM}/onnx-mnist",
            upstream.MNIST_INPUT, images, upstream.MNIST_OUTPUT, "FP32",
            upstream.onnx_predict(claim / "onnx-mnist" / "2" / "model.onnx", images),
        ),
        Served(
            "onnx-mnist-bare", "onnx", f"pvc://{CLAIM}/onnx-mnist-bare",
            upstream.MNIST_INPUT, images, upstream.MNIST_OUTPUT, "FP32",
            upstream.onnx_predict(claim / "onnx-mnist-bare" / "1" / "model.onnx", images),
        ),
    ]  # fmt: skip


def _answers(call: Callable[[], object]) -> bool:
    try:
        call()
    except InferenceServerException:
        return False
    return True


@pytest.fixture(scope="module")
def up(
    pvc: pathlib.Path, served: list[Served], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    data = tmp_path_factory.mktemp("upstream-models")
    with run_up(data, args=["--pvc-root", str(pvc)]) as running:
        for model in served:
            done = apply(running, isvc(model.name, format=model.format, uri=model.uri))
            assert done.returncode == 0, done.stderr
        client = running.grpc_client()
        try:
            for model in served:
                wait_until(
                    lambda model=model: _answers(lambda: _grpc(client, model)),
                    LOAD_TIMEOUT_S,
                    f"{model.name} answers; log:\n{running.log_tail()}",
                )
        finally:
            client.close()
        yield running


def _grpc(client: triton_grpc.InferenceServerClient, model: Served) -> triton_grpc.InferResult:
    tensor = triton_grpc.InferInput(model.input_name, list(model.rows.shape), "FP32")
    tensor.set_data_from_numpy(model.rows)
    return client.infer(model.name, [tensor], client_timeout=60)


def _check(model: Served, name: str, datatype: str, values: np.ndarray | None) -> None:
    assert (name, datatype) == (model.output, model.datatype), model.name
    assert values is not None
    np.testing.assert_allclose(values.reshape(model.expected.shape), model.expected, rtol=1e-6)


def test_first_output_over_grpc(up: Up, served: list[Served]) -> None:
    client = up.grpc_client()
    try:
        for model in served:
            result = _grpc(client, model)
            first = result.get_response().outputs[0]
            _check(model, first.name, first.datatype, result.as_numpy(first.name))
    finally:
        client.close()


def test_first_output_over_rest(up: Up, served: list[Served]) -> None:
    client = triton_http.InferenceServerClient(up.rest)
    try:
        for model in served:
            tensor = triton_http.InferInput(model.input_name, list(model.rows.shape), "FP32")
            tensor.set_data_from_numpy(model.rows, binary_data=False)
            result = client.infer(model.name, [tensor], timeout=60)
            first = result.get_response()["outputs"][0]
            _check(model, first["name"], first["datatype"], result.as_numpy(first["name"]))
    finally:
        client.close()


def test_first_output_in_typed_contents(up: Up, served: list[Served]) -> None:
    """Typed in, typed out: upstream's client reads ``contents.fp32_contents``."""
    with grpc.insecure_channel(up.grpc) as channel:
        stub = v2_grpc.GRPCInferenceServiceStub(channel)
        for model in served:
            request = v2.ModelInferRequest(model_name=model.name)
            request.inputs.add(
                name=model.input_name, datatype="FP32", shape=list(model.rows.shape)
            ).contents.fp32_contents.extend(model.rows.ravel().tolist())
            response = stub.ModelInfer(request, timeout=60)
            assert not response.raw_output_contents
            first = response.outputs[0]
            contents = (
                first.contents.fp64_contents
                if model.datatype == "FP64"
                else first.contents.fp32_contents
            )
            _check(model, first.name, first.datatype, np.asarray(contents))


def test_a_pickle_on_the_builtin_runtime_says_what_to_change(up: Up) -> None:
    done = apply(up, isvc("sklearn-pickle", format="sklearn", uri=f"pvc://{CLAIM}/sklearn-pickle"))
    assert done.returncode == 0, done.stderr
    wanted = "spec.predictor.model.runtime: meshserve-pickle"
    # Read as text: wherever the status keeps its failure message.
    wait_until(
        lambda: wanted in json.dumps(status_of(up, "isvc", "sklearn-pickle")),
        LOAD_TIMEOUT_S,
        f"the failure names {wanted!r}",
    )
