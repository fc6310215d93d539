"""`meshserve up` serving the example models to tritonclient over gRPC and REST."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests._examples import assert_outputs_match, iris_rows, library_predictions, model_type
from tests.integration._up import (
    Registration,
    Up,
    grpc_outputs,
    http_outputs,
    input_name,
    iris_grpc_input,
    iris_http_input,
    make_forest,
    run_up,
)

pytestmark = pytest.mark.integration

MAX_MESSAGE_BYTES = 64 * 1024
"""Small enough that a test can exceed it cheaply, big enough for every normal request."""

# The in-process runtime refuses pickle; test_up_process_runtime serves joblib.
INPROCESS = ("sklearn-skops", "xgboost-json", "xgboost-ubj", "lightgbm", "onnx")

CROWD = "crowd"
"""A forest that takes a second or so to load: long enough that concurrent
first requests all arrive while its load runs."""
CROWD_TREES = 200
CONCURRENT_REQUESTS = 16


@pytest.fixture(scope="module")
def up(
    example_models: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("up-serving")
    register = [Registration.example(name, example_models[name]) for name in INPROCESS]
    forest = make_forest(root / "crowd.skops", trees=CROWD_TREES)
    register.append(Registration(name=CROWD, type="sklearn", path=forest))
    env = {"MESHSERVE_SERVER__GRPC_MAX_MESSAGE_SIZE_BYTES": str(MAX_MESSAGE_BYTES)}
    with run_up(root / "data", register=register, env=env) as up:
        yield up


def _library(
    example_models: dict[str, pathlib.Path], name: str, rows: np.ndarray
) -> dict[str, np.ndarray]:
    return library_predictions(name, example_models[name], rows)


def test_server_is_live_and_ready_on_both_ports(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    assert grpc_client.is_server_live()
    assert grpc_client.is_server_ready()
    assert http_client.is_server_live()
    assert http_client.is_server_ready()
    grpc_metadata = grpc_client.get_server_metadata()
    assert grpc_metadata.name == "meshserve"
    assert "binary_tensor_data" in grpc_metadata.extensions
    http_metadata = http_client.get_server_metadata()
    assert http_metadata["name"] == "meshserve"
    assert http_metadata["version"] == grpc_metadata.version


@pytest.mark.parametrize("name", INPROCESS)
def test_every_example_answers_over_grpc_as_its_library_predicts(
    name: str,
    grpc_client: triton_grpc.InferenceServerClient,
    example_models: dict[str, pathlib.Path],
) -> None:
    rows = iris_rows(7)
    result = grpc_client.infer(name, [iris_grpc_input(name, rows)])
    assert result.get_response().model_name == name
    assert_outputs_match(grpc_outputs(result), _library(example_models, name, rows))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
@pytest.mark.parametrize("name", INPROCESS)
def test_every_example_answers_over_rest(
    name: str,
    binary: bool,
    http_client: triton_http.InferenceServerClient,
    example_models: dict[str, pathlib.Path],
) -> None:
    rows = iris_rows(6)
    expected = _library(example_models, name, rows)
    outputs = [triton_http.InferRequestedOutput(o, binary_data=binary) for o in expected]
    result = http_client.infer(name, [iris_http_input(name, rows, binary=binary)], outputs=outputs)
    response = result.get_response()
    assert response["model_name"] == name
    # Each output in the form asked for: inline JSON data, or binary after the header.
    for output in response["outputs"]:
        if binary:
            assert "data" not in output, output
            assert output["parameters"]["binary_data_size"] > 0, output
        else:
            assert "data" in output, output
            assert "binary_data_size" not in output.get("parameters", {}), output
    assert_outputs_match(http_outputs(result), expected)


@pytest.mark.parametrize("name", INPROCESS)
def test_model_metadata_over_grpc_and_rest(
    name: str,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    example_models: dict[str, pathlib.Path],
) -> None:
    expected_outputs = sorted(_library(example_models, name, iris_rows(1)))
    metadata = grpc_client.get_model_metadata(name)
    assert metadata.name == name
    assert [(t.name, list(t.shape)) for t in metadata.inputs] == [(input_name(name), [-1, 4])]
    if model_type(name) == "onnx":
        assert metadata.inputs[0].datatype == "FP32"
    assert sorted(t.name for t in metadata.outputs) == expected_outputs
    rest = http_client.get_model_metadata(name)
    assert rest["name"] == name
    assert [(t["name"], t["datatype"], t["shape"]) for t in rest["inputs"]] == [
        (t.name, t.datatype, list(t.shape)) for t in metadata.inputs
    ]
    assert [(t["name"], t["datatype"]) for t in rest["outputs"]] == [
        (t.name, t.datatype) for t in metadata.outputs
    ]


def test_model_readiness_follows_loading(
    up: Up,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    example_models: dict[str, pathlib.Path],
) -> None:
    name = "ready-probe"
    up.management.register(name, type="lightgbm", path=example_models["lightgbm"])
    assert not grpc_client.is_model_ready(name)
    assert not http_client.is_model_ready(name)
    assert up.management.status_name(name) == "NOT_LOADED"
    grpc_client.infer(name, [iris_grpc_input("lightgbm", iris_rows(1))])
    assert grpc_client.is_model_ready(name)
    assert http_client.is_model_ready(name)
    assert up.management.status_name(name) == "LOADED"
    # Known but unloaded answers 400, unknown 404 (Triton's convention).
    ready = httpx.get(f"{up.rest_url}/v2/models/nope/ready", timeout=10)
    assert ready.status_code == 404
    assert not http_client.is_model_ready("nope")


def test_grpc_model_ready_is_false_for_an_unknown_model(
    grpc_client: triton_grpc.InferenceServerClient,
) -> None:
    # Triton answers ModelReady for an unknown model with ready=false, not an
    # error; tritonclient's is_model_ready returns a bool and callers rely on it.
    assert grpc_client.is_model_ready("nope") is False


def test_register_with_load_now_and_sync_answers_loaded(
    up: Up, grpc_client: triton_grpc.InferenceServerClient, example_models: dict[str, pathlib.Path]
) -> None:
    name = "load-now-sync"
    reply = up.management.register(
        name, type="xgboost", path=example_models["xgboost-json"], load_now=True, sync=True
    )
    assert reply.status == reply.LOADED, reply
    assert [c.location for c in reply.modelCopyInfos], reply
    # Loaded before any request reached it.
    assert grpc_client.is_model_ready(name)
    summary = up.management.models()[name]
    assert (summary.status, summary.loadCount) == ("LOADED", 1)
    assert summary.sizeBytes > 0


def test_unknown_model_is_not_found_on_both_ports(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    rows = iris_rows(1)
    with pytest.raises(InferenceServerException) as over_grpc:
        grpc_client.infer("nope", [iris_grpc_input("lightgbm", rows)])
    assert over_grpc.value.status() == "StatusCode.NOT_FOUND"
    assert "nope" in over_grpc.value.message()
    with pytest.raises(InferenceServerException) as over_rest:
        http_client.infer("nope", [iris_http_input("lightgbm", rows, binary=False)])
    assert over_rest.value.status() == "404"
    assert "nope" in over_rest.value.message()
    with pytest.raises(InferenceServerException) as metadata:
        grpc_client.get_model_metadata("nope")
    assert metadata.value.status() == "StatusCode.NOT_FOUND"


def _grpc_error(
    client: triton_grpc.InferenceServerClient, name: str, tensor: triton_grpc.InferInput
) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, [tensor])
    return caught.value


def _http_error(
    client: triton_http.InferenceServerClient, name: str, tensor: triton_http.InferInput
) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, [tensor])
    return caught.value


WRONG_DATATYPES = [
    # A tabular model given strings; the onnx model given FP64 for its FP32 input.
    pytest.param(
        "xgboost-json", "BYTES", np.array([[b"5.1"] * 4] * 2, dtype=np.object_), id="bytes"
    ),
    pytest.param("onnx", "FP64", iris_rows(2), id="fp64-to-fp32"),
]


@pytest.mark.parametrize(("name", "datatype", "data"), WRONG_DATATYPES)
def test_wrong_datatype_is_invalid_argument_naming_the_input(
    name: str,
    datatype: str,
    data: np.ndarray,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    over_grpc = triton_grpc.InferInput(input_name(name), list(data.shape), datatype)
    over_grpc.set_data_from_numpy(data)
    error = _grpc_error(grpc_client, name, over_grpc)
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert input_name(name) in error.message()
    over_rest = triton_http.InferInput(input_name(name), list(data.shape), datatype)
    over_rest.set_data_from_numpy(data, binary_data=False)
    error = _http_error(http_client, name, over_rest)
    assert error.status() == "400"
    assert input_name(name) in error.message()


@pytest.mark.parametrize("name", ["sklearn-skops", "onnx"])
def test_wrong_shape_is_invalid_argument_naming_the_input(
    name: str,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    three_features = iris_rows(2)[:, :3]
    error = _grpc_error(grpc_client, name, iris_grpc_input(name, three_features))
    assert error.status() == "StatusCode.INVALID_ARGUMENT"
    assert input_name(name) in error.message()
    error = _http_error(http_client, name, iris_http_input(name, three_features, binary=True))
    assert error.status() == "400"
    assert input_name(name) in error.message()


def test_oversized_request_is_resource_exhausted_or_413(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    example_models: dict[str, pathlib.Path],
) -> None:
    name = "xgboost-json"
    rows = np.tile(iris_rows(1), (MAX_MESSAGE_BYTES // 32 + 1, 1))  # 4 x FP64 = 32 bytes a row
    assert rows.nbytes > MAX_MESSAGE_BYTES
    error = _grpc_error(grpc_client, name, iris_grpc_input(name, rows))
    assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
    error = _http_error(http_client, name, iris_http_input(name, rows, binary=True))
    assert error.status() == "413"
    assert str(MAX_MESSAGE_BYTES) in error.message()
    # Both ports keep serving requests under the limit.
    small = iris_rows(3)
    expected = _library(example_models, name, small)
    assert_outputs_match(
        grpc_outputs(grpc_client.infer(name, [iris_grpc_input(name, small)])), expected
    )
    result = http_client.infer(name, [iris_http_input(name, small, binary=True)])
    assert_outputs_match(http_outputs(result), expected)


def test_concurrent_first_requests_to_an_unloaded_model_load_it_once(up: Up) -> None:
    assert up.management.status_name(CROWD) == "NOT_LOADED"
    forest = up.management.models()[CROWD].path
    rows = iris_rows(5)
    expected = library_predictions("sklearn-skops", pathlib.Path(forest), rows)
    clients = [up.grpc_client() for _ in range(CONCURRENT_REQUESTS)]
    start = threading.Barrier(CONCURRENT_REQUESTS)
    answers: list[dict[str, np.ndarray]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    def first_request(client: triton_grpc.InferenceServerClient) -> None:
        try:
            start.wait(timeout=30)
            result = client.infer(CROWD, [iris_grpc_input(CROWD, rows)], client_timeout=60)
            assert result.get_response().model_name == CROWD
            with lock:
                answers.append(grpc_outputs(result))
        except BaseException as exc:
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=first_request, args=(c,)) for c in clients]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
    finally:
        for client in clients:
            client.close()
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(answers) == CONCURRENT_REQUESTS
    for answer in answers:
        assert_outputs_match(answer, expected)
    summary = up.management.models()[CROWD]
    assert (summary.status, summary.loadCount) == ("LOADED", 1)
