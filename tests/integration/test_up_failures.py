"""`meshserve up` when loads fail: corrupt artifacts, load timeouts, failure
expiry; the instance keeps serving its other models throughout."""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests._examples import assert_outputs_match, iris_rows, library_predictions
from tests.integration._up import (
    Registration,
    Up,
    grpc_outputs,
    http_outputs,
    iris_grpc_input,
    iris_http_input,
    make_slow_onnx,
    run_up,
    wait_until,
)

pytestmark = pytest.mark.integration

LOAD_TIMEOUT_MS = 2000
FAILURE_EXPIRY_S = 3.0
SLOW_NODES = 36_000
"""An onnx chain that takes about 8 s to load: over three times the timeout,
so that it still loads when the timeout has passed twice."""

SERVING = ("xgboost-json", "lightgbm", "onnx")
COLD = ("xgboost-ubj",)


@dataclass(frozen=True, slots=True)
class Failing:
    up: Up
    models: dict[str, pathlib.Path]
    corrupt: pathlib.Path
    fixable: pathlib.Path


@pytest.fixture(scope="module")
def failing(
    example_models: dict[str, pathlib.Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Failing]:
    root = tmp_path_factory.mktemp("up-failures")
    corrupt = root / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    fixable = root / "fixable" / "model.onnx"
    fixable.parent.mkdir()
    fixable.write_bytes(b"\x00" * 64)
    slow = make_slow_onnx(root / "slow.onnx", nodes=SLOW_NODES)
    register = [Registration.example(name, example_models[name]) for name in (*SERVING, *COLD)]
    register += [
        Registration(name="corrupt", type="onnx", path=corrupt),
        Registration(name="fixable", type="onnx", path=fixable),
        Registration(name="slow", type="onnx", path=slow),
        Registration(name="slow-again", type="onnx", path=slow),
    ]
    env = {
        "MESHSERVE_RUNTIME__MODEL_LOADING_TIMEOUT_MS": str(LOAD_TIMEOUT_MS),
        "MESHSERVE_CACHE__LOAD_FAILURE_EXPIRY_SECONDS": str(FAILURE_EXPIRY_S),
    }
    with run_up(root / "data", register=register, env=env) as up:
        _wait_for_a_free_loading_slot(up, example_models["onnx"])
        yield Failing(up=up, models=example_models, corrupt=corrupt, fixable=fixable)


def _wait_for_a_free_loading_slot(up: Up, path: pathlib.Path) -> None:
    """Load throwaway copies of ``path`` until one loads within the timeout.

    After `ready` the runtime imports its format libraries (seconds) in its
    one loading slot, and a load queued behind that counts the wait against
    LOAD_TIMEOUT_MS; once a load succeeds, the slot is free and every library
    imported, so loads here take milliseconds.
    """
    attempts = itertools.count()

    def one_loads() -> bool:
        reply = up.management.register(
            f"warm-up-{next(attempts)}", type="onnx", path=path, load_now=True, sync=True
        )
        return bool(reply.status == reply.LOADED)

    wait_until(one_loads, timeout=60, what="a load within the timeout", interval=0.1)


@pytest.fixture(scope="module")
def grpc_client(failing: Failing) -> Iterator[triton_grpc.InferenceServerClient]:
    client = failing.up.grpc_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(failing: Failing) -> Iterator[triton_http.InferenceServerClient]:
    client = failing.up.http_client()
    yield client
    client.close()


def _assert_serves(
    failing: Failing,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
    names: tuple[str, ...] = SERVING,
) -> None:
    rows = iris_rows(4)
    for name in names:
        expected = library_predictions(name, failing.models[name], rows)
        result = grpc_client.infer(name, [iris_grpc_input(name, rows)])
        assert_outputs_match(grpc_outputs(result), expected)
        answer = http_client.infer(name, [iris_http_input(name, rows, binary=True)])
        assert_outputs_match(http_outputs(answer), expected)


def _infer_error(client: triton_grpc.InferenceServerClient, name: str) -> InferenceServerException:
    """The error an infer with the onnx example's input gets from ``name``
    (every failing model here is an onnx artifact)."""
    with pytest.raises(InferenceServerException) as caught:
        client.infer(name, [iris_grpc_input("onnx", iris_rows(2))], client_timeout=60)
    return caught.value


def test_corrupt_model_reports_loading_failed_with_its_reason(
    failing: Failing,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    _assert_serves(failing, grpc_client, http_client)
    error = _infer_error(grpc_client, "corrupt")
    assert error.status() == "StatusCode.INTERNAL"
    assert "corrupt" in error.message()

    status = failing.up.management.status("corrupt")
    assert status.status == status.LOADING_FAILED, status
    assert len(status.errors) == 1
    # The reason names the artifact, so an operator can find it.
    assert failing.corrupt.name in status.errors[0], status.errors
    assert [c.copyStatus for c in status.modelCopyInfos] == [status.LOADING_FAILED]
    summary = failing.up.management.models()["corrupt"]
    assert (summary.status, summary.loadCount) == ("LOADING_FAILED", 0)
    assert list(summary.errors) == list(status.errors)
    # REST reports the same failure; the other models keep serving.
    with pytest.raises(InferenceServerException) as over_rest:
        http_client.infer("corrupt", [iris_http_input("onnx", iris_rows(1), binary=False)])
    assert over_rest.value.status() == "500"
    _assert_serves(failing, grpc_client, http_client)


def test_failed_model_is_retried_once_its_failure_expires(
    failing: Failing,
    grpc_client: triton_grpc.InferenceServerClient,
) -> None:
    rows = iris_rows(3)
    error = _infer_error(grpc_client, "fixable")
    assert error.status() == "StatusCode.INTERNAL"
    failed_at = time.monotonic()
    assert failing.up.management.status_name("fixable") == "LOADING_FAILED"

    # Fix the artifact in place; the failure still stands until it expires.
    replacement = failing.fixable.with_suffix(".tmp")
    shutil.copyfile(failing.models["onnx"], replacement)
    os.replace(replacement, failing.fixable)
    if time.monotonic() - failed_at < FAILURE_EXPIRY_S / 2:
        error = _infer_error(grpc_client, "fixable")
        assert error.status() == "StatusCode.INTERNAL"
        assert failing.up.management.models()["fixable"].loadCount == 0

    wait_until(
        lambda: failing.up.management.status_name("fixable") == "NOT_LOADED",
        timeout=FAILURE_EXPIRY_S + 10,
        what="the load failure of 'fixable' to expire",
    )
    result = grpc_client.infer("fixable", [iris_grpc_input("onnx", rows)])
    assert result.get_response().model_name == "fixable"
    assert_outputs_match(
        grpc_outputs(result), library_predictions("onnx", failing.models["onnx"], rows)
    )
    summary = failing.up.management.models()["fixable"]
    assert (summary.status, summary.loadCount, list(summary.errors)) == ("LOADED", 1, [])


def test_load_outlasting_the_timeout_fails_and_the_instance_keeps_serving(
    failing: Failing,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    _assert_serves(failing, grpc_client, http_client)
    started = time.monotonic()
    error = _infer_error(grpc_client, "slow")
    waited = time.monotonic() - started
    assert error.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert f"{LOAD_TIMEOUT_MS} ms" in error.message()
    assert waited >= LOAD_TIMEOUT_MS / 1000, waited
    # It gave up at the timeout, not when the load finally ended: the
    # runtime has not finished loading it yet (a loaded machine only makes
    # that load slower).
    assert "loaded model slow (" not in failing.up.log.read_text()

    status = failing.up.management.status("slow")
    assert status.status == status.LOADING_FAILED, status
    assert "did not load within" in status.errors[0], status.errors
    assert "modelLoadingTimeoutMillis" in status.errors[0], status.errors
    # Models already loaded answer while the abandoned load may still run.
    _assert_serves(failing, grpc_client, http_client)
    assert grpc_client.is_server_ready()


def test_a_model_loads_right_after_another_load_timed_out(
    failing: Failing,
    grpc_client: triton_grpc.InferenceServerClient,
    http_client: triton_http.InferenceServerClient,
) -> None:
    # Its own slow model: the one above may have expired or be settled by now.
    error = _infer_error(grpc_client, "slow-again")
    assert error.status() == "StatusCode.DEADLINE_EXCEEDED"
    # A model nobody has loaded yet loads at once: an abandoned load must not
    # hold the loading slot (or its thread) for the next one.
    _assert_serves(failing, grpc_client, http_client, names=COLD)
    summary = failing.up.management.models()[COLD[0]]
    assert (summary.status, summary.loadCount) == ("LOADED", 1)
