"""`meshserve up`: vmodels and ModelMesh's routing headers, over gRPC and REST."""

from __future__ import annotations

import base64
import pathlib
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from meshserve.protocol._pb import model_mesh_pb2 as mm
from tests._examples import assert_outputs_match, iris_rows, library_predictions
from tests.integration._up import (
    Registration,
    Up,
    grpc_outputs,
    http_outputs,
    iris_grpc_input,
    iris_http_input,
    run_up,
    wait_until,
)

pytestmark = pytest.mark.integration

# Every model here takes the tabular input (input-0, FP64), so one request
# fits whichever model a vmodel points at.
EXAMPLES = ("xgboost-json", "lightgbm", "sklearn-skops")
COPIES = {
    "switch-old": "xgboost-json",
    "switch-new": "lightgbm",
    "pinned": "lightgbm",
}
"""Models only one test uses, by the example they copy."""
ROUTED = "routed"
"""A vmodel on xgboost-json, created by the fixture."""

_VStatus = mm.VModelStatusInfo.VModelStatus


@pytest.fixture(scope="module")
def up(
    example_models: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    register = [Registration.example(name, example_models[name]) for name in EXAMPLES]
    register += [
        Registration.example(example, example_models[example], as_name=name)
        for name, example in COPIES.items()
    ]
    with run_up(tmp_path_factory.mktemp("up-vmodels") / "data", register=register) as up:
        _set_vmodel(up, ROUTED, "xgboost-json")
        yield up


@pytest.fixture(scope="module")
def expected(example_models: dict[str, pathlib.Path]) -> dict[str, dict[str, np.ndarray]]:
    """What each registered model answers for ROWS, by model id."""
    by_example = {name: library_predictions(name, example_models[name], ROWS) for name in EXAMPLES}
    return {**by_example, **{name: by_example[example] for name, example in COPIES.items()}}


ROWS = iris_rows(4)


def _set_vmodel(
    up: Up, vmodel_id: str, target: str, *, owner: str = "", sync: bool = True
) -> mm.VModelStatusInfo:
    reply: mm.VModelStatusInfo = up.management.mesh.setVModel(
        mm.SetVModelRequest(vModelId=vmodel_id, targetModelId=target, owner=owner, sync=sync),
        timeout=60,
    )
    return reply


def _grpc_infer(
    client: triton_grpc.InferenceServerClient, name: str, headers: dict[str, str | bytes]
) -> tuple[str, dict[str, np.ndarray]]:
    result = client.infer(name, [iris_grpc_input("lightgbm", ROWS)], headers=headers)
    return result.get_response().model_name, grpc_outputs(result)


def _http_infer(
    client: triton_http.InferenceServerClient, name: str, headers: dict[str, str]
) -> tuple[str, dict[str, np.ndarray]]:
    tensor = iris_http_input("lightgbm", ROWS, binary=True)
    result = client.infer(name, [tensor], headers=headers)
    return result.get_response()["model_name"], http_outputs(result)


# Each case: routing headers, and the concrete model they reach. The request
# names a model that does not exist: the header decides.
ROUTES = [
    pytest.param({"mm-model-id": "lightgbm"}, "lightgbm", id="mm-model-id"),
    pytest.param({"mm-vmodel-id": ROUTED}, "xgboost-json", id="mm-vmodel-id"),
]


@pytest.mark.parametrize(("headers", "model_id"), ROUTES)
def test_routing_headers_over_grpc_metadata(
    headers: dict[str, str],
    model_id: str,
    grpc_client: triton_grpc.InferenceServerClient,
    expected: dict[str, dict[str, np.ndarray]],
) -> None:
    name, outputs = _grpc_infer(grpc_client, "no-such-model", dict(headers))
    assert name == model_id
    assert_outputs_match(outputs, expected[model_id])
    # The -bin form carries the same id as raw bytes.
    ((key, value),) = headers.items()
    name, outputs = _grpc_infer(grpc_client, "no-such-model", {f"{key}-bin": value.encode()})
    assert name == model_id
    assert_outputs_match(outputs, expected[model_id])


@pytest.mark.parametrize(("headers", "model_id"), ROUTES)
def test_routing_headers_over_rest(
    headers: dict[str, str],
    model_id: str,
    http_client: triton_http.InferenceServerClient,
    expected: dict[str, dict[str, np.ndarray]],
) -> None:
    name, outputs = _http_infer(http_client, "no-such-model", dict(headers))
    assert name == model_id
    assert_outputs_match(outputs, expected[model_id])
    # Over HTTP the -bin form is base64.
    ((key, value),) = headers.items()
    encoded = base64.b64encode(value.encode()).decode()
    name, outputs = _http_infer(http_client, "no-such-model", {f"{key}-bin": encoded})
    assert name == model_id
    assert_outputs_match(outputs, expected[model_id])


def test_a_vmodel_name_serves_its_active_model_and_replies_with_its_id(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    expected: dict[str, dict[str, np.ndarray]],
) -> None:
    name, outputs = _grpc_infer(grpc_client, ROUTED, {})
    assert name == "xgboost-json"
    assert_outputs_match(outputs, expected["xgboost-json"])
    name, outputs = _http_infer(http_client, ROUTED, {})
    assert name == "xgboost-json"
    assert_outputs_match(outputs, expected["xgboost-json"])


def test_both_routing_headers_at_once_are_invalid_argument(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    both = {"mm-model-id": "lightgbm", "mm-vmodel-id": ROUTED}
    with pytest.raises(InferenceServerException) as over_grpc:
        _grpc_infer(grpc_client, "lightgbm", dict(both))
    assert over_grpc.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException) as over_rest:
        _http_infer(http_client, "lightgbm", both)
    assert over_rest.value.status() == "400"


def test_routing_headers_naming_nothing_are_not_found(
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    for headers in ({"mm-model-id": "ghost"}, {"mm-vmodel-id": "ghost"}):
        with pytest.raises(InferenceServerException) as over_grpc:
            _grpc_infer(grpc_client, "lightgbm", dict(headers))
        assert over_grpc.value.status() == "StatusCode.NOT_FOUND"
        assert "ghost" in over_grpc.value.message()
        with pytest.raises(InferenceServerException) as over_rest:
            _http_infer(http_client, "lightgbm", headers)
        assert over_rest.value.status() == "404"


def test_vmodel_switch_under_a_request_loop_fails_no_request(
    up: Up, expected: dict[str, dict[str, np.ndarray]]
) -> None:
    vmodel = "switching"
    reply = _set_vmodel(up, vmodel, "switch-old")
    assert (reply.status, reply.activeModelId) == (_VStatus.DEFINED, "switch-old")
    served: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def loop() -> None:
        client = up.grpc_client()
        try:
            while not stop.is_set():
                try:
                    name, outputs = _grpc_infer(client, vmodel, {})
                    assert_outputs_match(outputs, expected[name])
                except BaseException as exc:
                    failures.append(exc)
                else:
                    served.append(name)
        finally:
            client.close()

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        wait_until(lambda: len(served) >= 20, timeout=30, what="requests through the vmodel")
        reply = _set_vmodel(up, vmodel, "switch-new", sync=False)
        assert reply.targetModelId == "switch-new"
        wait_until(
            lambda: up.management.vmodel(vmodel).activeModelId == "switch-new",
            timeout=30,
            what="the vmodel to switch to its new target",
        )
        switched_at = len(served)
        wait_until(
            lambda: len(served) >= switched_at + 20 or failures,
            timeout=30,
            what="requests after the switch",
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert failures == []
    # Old until the switch, new after it, and never back.
    first_new = served.index("switch-new")
    assert first_new >= 20
    assert set(served[:first_new]) == {"switch-old"}
    assert set(served[first_new:]) == {"switch-new"}
    status = up.management.vmodel(vmodel)
    assert (status.status, status.activeModelId, status.targetModelId) == (
        _VStatus.DEFINED,
        "switch-new",
        "switch-new",
    )


def test_vmodel_owned_by_another_is_not_changed(
    up: Up, grpc_client: triton_grpc.InferenceServerClient
) -> None:
    vmodel = "owned"
    reply = _set_vmodel(up, vmodel, "lightgbm", owner="alice")
    assert (reply.status, reply.owner) == (_VStatus.DEFINED, "alice")

    with pytest.raises(grpc.RpcError) as taken:
        _set_vmodel(up, vmodel, "xgboost-json", owner="bob")
    assert taken.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "alice" in (taken.value.details() or "")
    # Another owner sees nothing; the owner sees it unchanged.
    assert up.management.vmodel(vmodel, owner="bob").status == _VStatus.NOT_FOUND
    mine = up.management.vmodel(vmodel, owner="alice")
    assert (mine.status, mine.targetModelId) == (_VStatus.DEFINED, "lightgbm")

    # Another owner cannot delete it (ModelMesh ignores the call; refusing it
    # is fine too, as long as the vmodel stays).
    try:
        up.management.mesh.deleteVModel(
            mm.DeleteVModelRequest(vModelId=vmodel, owner="bob"), timeout=10
        )
    except grpc.RpcError as refused:
        assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert up.management.vmodel(vmodel).targetModelId == "lightgbm"
    assert _grpc_infer(grpc_client, vmodel, {})[0] == "lightgbm"

    up.management.mesh.deleteVModel(
        mm.DeleteVModelRequest(vModelId=vmodel, owner="alice"), timeout=10
    )
    assert up.management.vmodel(vmodel).status == _VStatus.NOT_FOUND
    with pytest.raises(InferenceServerException) as gone:
        _grpc_infer(grpc_client, vmodel, {})
    assert gone.value.status() == "StatusCode.NOT_FOUND"


def test_unregistering_a_model_a_vmodel_uses_is_failed_precondition(
    up: Up, grpc_client: triton_grpc.InferenceServerClient
) -> None:
    vmodel = "pinning"
    _set_vmodel(up, vmodel, "pinned")
    with pytest.raises(grpc.RpcError) as refused:
        up.management.mesh.unregisterModel(mm.UnregisterModelRequest(modelId="pinned"), timeout=10)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert vmodel in (refused.value.details() or "")
    # Still registered and serving through the vmodel.
    assert up.management.status_name("pinned") != "NOT_FOUND"
    assert _grpc_infer(grpc_client, vmodel, {})[0] == "pinned"

    up.management.mesh.deleteVModel(mm.DeleteVModelRequest(vModelId=vmodel), timeout=10)
    up.management.mesh.unregisterModel(mm.UnregisterModelRequest(modelId="pinned"), timeout=10)
    assert up.management.status_name("pinned") == "NOT_FOUND"
    assert "pinned" not in up.management.models()
    with pytest.raises(InferenceServerException) as gone:
        _grpc_infer(grpc_client, "pinned", {})
    assert gone.value.status() == "StatusCode.NOT_FOUND"
