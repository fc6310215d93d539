"""ModelMesh Serving's functional scenarios, against a live `meshserve up`
pulling from a real S3 server (SeaweedFS) through a `storage-config` Secret
whose key is `localMinIO`, as ModelMesh Serving's quickstart sets it up."""

from __future__ import annotations

import datetime
import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests._examples import iris_rows, library_predictions, make_models_module
from tests.integration._mesh import wait_until
from tests.integration._objstores import S3Server, run_seaweedfs
from tests.integration._resources import (
    apply,
    cli,
    infer,
    isvc,
    serving_loop,
    status,
    status_field,
    wait_status,
)
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(240)

BUCKET = "modelmesh-example-models"

# config/example-isvcs/example-onnx-mnist.yaml in ModelMesh Serving, as published.
MODELMESH_EXAMPLE = """\
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: example-onnx-mnist
  annotations:
    serving.kserve.io/deploymentMode: ModelMesh
spec:
  predictor:
    model:
      modelFormat:
        name: onnx
      storage:
        key: localMinIO
        path: onnx/mnist.onnx
"""

SINGLE_MODEL_RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: kserve-sklearnserver
spec:
  supportedModelFormats:
    - name: sklearn
      version: "1"
      autoSelect: true
  containers:
    - name: kserve-container
      image: kserve/sklearnserver:latest
"""


def _isvc(name: str, fmt: str, path: str, *, key: str = "localMinIO", **more: Any) -> str:
    return isvc(name, format=fmt, key=key, path=path, **more)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    made: dict[str, pathlib.Path] = make_models_module().make_models(
        tmp_path_factory.mktemp("models")
    )
    return made


@pytest.fixture(scope="module")
def s3(
    tmp_path_factory: pytest.TempPathFactory, models: dict[str, pathlib.Path]
) -> Iterator[S3Server]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        client = server.client()
        client.create_bucket(Bucket=BUCKET)
        client.upload_file(str(models["sklearn-skops"]), BUCKET, "sklearn/iris.skops")
        client.upload_file(str(models["xgboost-json"]), BUCKET, "xgboost/iris.json")
        client.upload_file(str(models["onnx"]), BUCKET, "onnx/mnist.onnx")
        yield server


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Up]:
    env = {"MESHSERVE_MESH__PUBLISH_INTERVAL_S": "0.3"}
    with run_up(tmp_path_factory.mktemp("scenarios"), env=env) as running:
        entry = {
            "type": "s3",
            "access_key_id": s3.access_key_id,
            "secret_access_key": s3.secret_access_key,
            "endpoint_url": s3.endpoint_url,
            "region": s3.region,
            "bucket": BUCKET,
        }
        secret = (
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: storage-config\n"
            f"stringData:\n  localMinIO: '{json.dumps(entry)}'\n"
        )
        done = apply(running, secret)
        assert done.returncode == 0, done.stderr
        yield running


def _at(up: Up) -> list[str]:
    return ["--data-dir", str(up.data_dir)]


def _predict(up: Up, name: str, rows: np.ndarray) -> np.ndarray:
    return infer(up, name, rows.astype(np.float32))


def test_a_modelmesh_serving_example_file_is_served_unchanged(up: Up) -> None:
    done = apply(up, MODELMESH_EXAMPLE)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no field of it is ignored
    wait_status(up, "example-onnx-mnist", ready=True, activeModelState="Loaded")
    client = up.grpc_client()
    try:
        tensor = triton_grpc.InferInput("float_input", [2, 4], "FP32")
        tensor.set_data_from_numpy(iris_rows(2).astype(np.float32))
        result = client.infer("example-onnx-mnist", [tensor], client_timeout=30)
        outputs = {o.name for o in result.get_response().outputs}
    finally:
        client.close()
    assert {"label", "probabilities"} <= outputs


def test_created_models_go_from_loading_to_loaded_two_types_and_two_of_one_type(
    up: Up, models: dict[str, pathlib.Path]
) -> None:
    rows = iris_rows(5)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "meshserve", "get", "isvc", "-w", "-o", "json", *_at(up)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        time.sleep(1.5)  # the watch is set up
        for name, fmt, path in (
            ("iris-sk-1", "sklearn", "sklearn/iris.skops"),
            ("iris-sk-2", "sklearn", "sklearn/iris.skops"),
            ("iris-xgb", "xgboost", "xgboost/iris.json"),
        ):
            done = apply(up, _isvc(name, fmt, path))
            assert done.returncode == 0, done.stderr
        for name in ("iris-sk-1", "iris-sk-2", "iris-xgb"):
            wait_status(up, name, ready=True, activeModelState="Loaded")
    finally:
        time.sleep(1.0)
        watcher.terminate()
        output, _ = watcher.communicate(timeout=10)
    expected_sk = library_predictions("sklearn-skops", models["sklearn-skops"], rows)["predict"]
    expected_xgb = library_predictions("xgboost-json", models["xgboost-json"], rows)["predict"]
    np.testing.assert_array_equal(_predict(up, "iris-sk-1", rows), expected_sk)
    np.testing.assert_array_equal(_predict(up, "iris-sk-2", rows), expected_sk)
    np.testing.assert_array_equal(_predict(up, "iris-xgb", rows), expected_xgb)
    # Each one's states as the watch saw them: not loaded first, Loaded last.
    seen: dict[str, list[str]] = {}
    decoder = json.JSONDecoder()
    text = output.strip()
    while text:
        document, end = decoder.raw_decode(text)
        text = text[end:].lstrip()
        state = status_field(document.get("status") or {}, "activeModelState")
        if state is not None:
            seen.setdefault(document["metadata"]["name"], []).append(state)
    for name in ("iris-sk-1", "iris-sk-2", "iris-xgb"):
        assert seen[name][0] in ("Pending", "Standby", "Loading"), seen[name]
        assert seen[name][-1] == "Loaded", seen[name]


def test_an_update_changing_the_format_keeps_answering_through_the_transition(
    up: Up, models: dict[str, pathlib.Path]
) -> None:
    rows = iris_rows(5)
    assert apply(up, _isvc("iris-switch", "sklearn", "sklearn/iris.skops")).returncode == 0
    wait_status(up, "iris-switch", ready=True)
    first = up.management.vmodel("iris-switch").activeModelId
    transitions: set[str] = set()
    with serving_loop(up, "iris-switch", rows.astype(np.float32)) as loop:
        time.sleep(0.3)
        assert apply(up, _isvc("iris-switch", "xgboost", "xgboost/iris.json")).returncode == 0

        def settled() -> bool:
            found = status(up, "isvc", "iris-switch")
            transitions.add(status_field(found, "transitionStatus") or "")
            return (
                up.management.vmodel("iris-switch").activeModelId != first
                and status_field(found, "transitionStatus") == "UpToDate"
                and status_field(found, "activeModelState") == "Loaded"
            )

        wait_until(settled, 60, "the update to xgboost")
        time.sleep(0.5)
    assert loop.failures == []
    assert loop.served > 5
    expected = library_predictions("xgboost-json", models["xgboost-json"], rows)["predict"]
    np.testing.assert_array_equal(_predict(up, "iris-switch", rows), expected)
    assert status(up, "isvc", "iris-switch")["observedGeneration"] == 2
    assert transitions <= {"InProgress", "UpToDate"}


def test_an_invalid_path_bucket_or_storage_key_fails_with_location_and_time(up: Up) -> None:
    cases = {
        "bad-path": (
            _isvc("bad-path", "sklearn", "sklearn/missing.skops"),
            "sklearn/missing.skops",
        ),
        "bad-bucket": (
            _isvc(
                "bad-bucket",
                "sklearn",
                "sklearn/iris.skops",
                parameters={"bucket": "no-such-bucket"},
            ),
            "no-such-bucket",
        ),
        "bad-key": (
            _isvc("bad-key", "sklearn", "sklearn/iris.skops", key="noSuchKey"),
            "noSuchKey",
        ),
    }
    for name, (document, _) in cases.items():
        assert apply(up, document).returncode == 0, name
    started = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5)
    for name, (_, named) in cases.items():
        found = wait_status(up, name, activeModelState="FailedToLoad")
        failure: dict[str, Any] = status_field(found, "lastFailureInfo")
        assert status_field(found, "ready") is False
        assert failure["reason"] == "ModelLoadFailed", failure
        assert named in failure["message"], failure
        assert failure["location"], failure
        assert failure["modelRevisionName"].startswith(f"{name}__isvc-")
        when = datetime.datetime.fromisoformat(failure["time"].replace("Z", "+00:00"))
        assert when >= started.replace(microsecond=0)
        assert "meshserve-test-secret" not in json.dumps(found)  # no credential in a status


def test_a_single_model_runtime_is_ignored(up: Up) -> None:
    assert apply(up, SINGLE_MODEL_RUNTIME).returncode == 0
    verdict: dict[str, Any] = {}

    def judged() -> bool:
        nonlocal verdict
        verdict = status(up, "servingruntime", "kserve-sklearnserver")
        return bool(verdict)

    wait_until(judged, 30, "the runtime's verdict")
    assert verdict["accepted"] is False
    assert "not multiModel" in verdict["message"]
    named = _isvc("on-single", "sklearn", "sklearn/iris.skops", runtime="kserve-sklearnserver")
    assert apply(up, named).returncode == 0
    found = wait_status(up, "on-single", activeModelState="FailedToLoad")
    assert status_field(found, "lastFailureInfo")["reason"] == "RuntimeNotRecognized"
    # A model selected by format is not placed on it either.
    assert apply(up, _isvc("by-format", "sklearn", "sklearn/iris.skops")).returncode == 0
    wait_status(up, "by-format", ready=True)
    done = cli(up, "get", "servingruntime")
    assert "kserve-sklearnserver" in done.stdout
