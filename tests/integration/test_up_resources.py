"""ModelMesh Serving's resources on `meshserve up`: `apply`, `get`,
`describe`, `delete`, the controller's vmodels and the status it writes."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tritonclient.utils import InferenceServerException

from tests.integration._mesh import make_model, wait_until
from tests.integration._resources import (
    ISVC,
    active_model_state,
    apply,
    cli,
    infer,
    last_failure,
    serving_loop,
    wait_for_status,
    wait_status,
)
from tests.integration._resources import status as status_of
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pvc(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("pvc")
    make_model(root / "claim" / "v1" / "model.skops")
    make_model(root / "claim" / "v2" / "model.skops", seed=1)
    broken = root / "claim" / "broken" / "model.skops"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a zip file")
    return root


@pytest.fixture(scope="module")
def up(pvc: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    env = {"MESHSERVE_CONTROL__ALLOWED_RUNTIME_IMAGES": '["registry.example.test/allowed/*"]'}
    data = tmp_path_factory.mktemp("resources")
    with run_up(data, args=["--pvc-root", str(pvc)], env=env) as running:
        yield running


def test_an_inference_service_is_served_under_its_name(up: Up) -> None:
    done = apply(
        up, ISVC.format(name="example", format="sklearn", uri="pvc://claim/v1/model.skops")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "inferenceservice/example created"
    status = wait_status(up, "example", available=True)
    assert status["activeModelState"] == "Loaded"
    assert status["transitionStatus"] == "UpToDate"
    assert status["totalCopies"] == 1
    assert status["modelId"].startswith("example__isvc-")
    assert infer(up, "example").shape == (1,)
    table = cli(up, "get", "isvc")
    assert table.stdout.split("\n")[0].split() == [
        "NAME", "URL", "READY", "ACTIVEMODEL", "TARGETMODEL", "TRANSITION", "AGE"
    ]  # fmt: skip
    assert table.stdout.split("\n")[1].split()[:3] == ["example", status["grpcEndpoint"], "True"]


def test_an_update_moves_to_the_new_model_without_failed_requests(up: Up) -> None:
    wait_status(up, "example", available=True)
    before = status_of(up, "isvc", "example")["modelId"]
    with serving_loop(up, "example") as loop:
        done = apply(
            up, ISVC.format(name="example", format="sklearn", uri="pvc://claim/v2/model.skops")
        )
        assert done.stdout.strip() == "inferenceservice/example configured"
        status = wait_status(up, "example", transitionStatus="UpToDate", activeModelState="Loaded")
        wait_until(lambda: status_of(up, "isvc", "example")["modelId"] != before, 30, "new model")
        time.sleep(0.5)
    assert loop.failures == []
    assert loop.served > 5
    assert status["observedGeneration"] == 2
    # The old model was auto-deleted once the vmodel moved on.
    wait_until(lambda: before not in up.management.models(), 30, "old model removed")
    assert status["modelId"] in up.management.models() or any(
        m.startswith("example__isvc-") for m in up.management.models()
    )


def test_failures_are_reported_with_modelmesh_reasons(up: Up) -> None:
    v1 = "pvc://claim/v1/model.skops"
    cases = {
        "broken": (
            ISVC.format(name="broken", format="sklearn", uri="pvc://claim/broken/model.skops"),
            "ModelLoadFailed",
        ),
        "no-runtime": (
            ISVC.format(name="no-runtime", format="tensorflow", uri=v1),
            "NoSupportingRuntime",
        ),
        "named": (
            ISVC.format(name="named", format="sklearn", uri="pvc://claim/v1/model.skops")
            + "      runtime: no-such-runtime\n",
            "RuntimeNotRecognized",
        ),
        "invalid": (
            ISVC.format(name="invalid", format="sklearn", uri="pvc://claim/v1/model.skops")
            + "      storage:\n        path: v1/model.skops\n",
            "InvalidPredictorSpec",
        ),
    }  # fmt: skip
    for name, (document, _) in cases.items():
        done = apply(up, document)
        assert done.returncode == 0, (name, done.stderr)
    for name, (_, reason) in cases.items():
        status: dict[str, Any] = {}

        def failed(name: str = name, reason: str = reason) -> bool:
            nonlocal status
            status = status_of(up, "isvc", name)
            return (status.get("lastFailureInfo") or {}).get("reason") == reason

        wait_until(failed, 30, f"{name} fails with {reason}: {status}")
        assert status["available"] is False
        assert (status["lastFailureInfo"] or {}).get("message")
    assert status_of(up, "isvc", "invalid")["transitionStatus"] == "InvalidSpec"
    assert infer(up, "example").shape == (1,)  # the rest keeps serving


def test_the_framework_form_a_predictor_and_describe(up: Up) -> None:
    old_form = """
    apiVersion: serving.kserve.io/v1beta1
    kind: InferenceService
    metadata:
      name: old-form
      annotations:
        serving.kserve.io/deploymentMode: ModelMesh
    spec:
      predictor:
        sklearn:
          storageUri: pvc://claim/v1/model.skops
    ---
    apiVersion: serving.kserve.io/v1alpha1
    kind: Predictor
    metadata:
      name: pred
    spec:
      modelType:
        name: sklearn
      storage:
        path: v1/model.skops
        parameters:
          type: pvc
          name: claim
    """
    done = apply(up, old_form)
    assert done.returncode == 0, done.stderr
    wait_status(up, "old-form", available=True)
    assert infer(up, "old-form").shape == (1,)
    status = status_of(up, "predictor", "pred")
    wait_until(lambda: status_of(up, "predictor", "pred").get("available") is True, 30, "predictor")
    assert infer(up, "pred").shape == (1,)
    described = cli(up, "describe", "isvc", "old-form")
    assert described.returncode == 0, described.stderr
    assert "activeModelState: Loaded" in described.stdout
    assert status is not None


def test_unknown_fields_are_kept_with_a_warning(up: Up) -> None:
    text = ISVC.format(name="extra", format="sklearn", uri="pvc://claim/v1/model.skops")
    text = text.replace("  predictor:\n", "  predictor:\n    minReplicas: 3\n")
    done = apply(up, text)
    assert done.returncode == 0, done.stderr
    assert "minReplicas" in done.stderr
    shown = cli(up, "get", "isvc", "extra", "-o", "json")
    assert json.loads(shown.stdout)["spec"]["predictor"]["minReplicas"] == 3


RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: {name}
spec:
  multiModel: true
  supportedModelFormats:
    - name: sklearn
  containers:
    - name: server
      image: {image}
"""


def test_runtimes_must_match_the_allowlist(up: Up) -> None:
    allowed = RUNTIME.format(name="allowed-rt", image="registry.example.test/allowed/srv:1")
    refused = RUNTIME.format(name="refused-rt", image="docker.io/someone/srv:latest")
    for document in (allowed, refused):
        done = apply(up, document)
        assert done.returncode == 0, done.stderr

    def verdict(name: str) -> dict[str, Any]:
        return status_of(up, "servingruntime", name)

    wait_until(lambda: verdict("refused-rt").get("accepted") is False, 30, "refused")
    assert "docker.io/someone/srv:latest" in verdict("refused-rt")["message"]
    assert "allowedRuntimeImages" in verdict("refused-rt")["message"]
    wait_until(lambda: verdict("allowed-rt").get("accepted") is True, 30, "accepted")
    # A resource naming either says the runtime cannot run here, and why
    # (not "not recognized": `get servingruntime` lists both); its model is
    # never served by another runtime.
    v1 = "pvc://claim/v1/model.skops"
    whys = {
        "refused-rt": "container 'server' image 'docker.io/someone/srv:latest' matches no "
        "pattern of control.allowedRuntimeImages",
        # Allowed, but an image-only container runs on Kubernetes, not here.
        "allowed-rt": "exactly one container with a command",
    }
    for runtime in whys:
        uses = ISVC.format(name=f"uses-{runtime}", format="sklearn", uri=v1)
        done = apply(up, uses + f"      runtime: {runtime}\n")
        assert done.returncode == 0, done.stderr
    for runtime, why in whys.items():
        found = wait_for_status(
            up,
            f"uses-{runtime}",
            lambda s: last_failure(s).get("reason") == "RuntimeUnhealthy",
            "the runtime cannot run here",
        )
        message = last_failure(found)["message"]
        assert message.startswith(f"runtime {runtime} cannot run here: "), message
        assert why in message, message
        assert active_model_state(found) == "FailedToLoad"
        assert not [m for m in up.management.models() if m.startswith(f"uses-{runtime}__")]
    listed = cli(up, "get", "servingruntime").stdout
    assert "refused-rt" in listed and "allowed-rt" in listed
    # Logged once, not every pass of the controller.
    time.sleep(3)
    lines = up.log.read_text(errors="replace").splitlines()
    assert (
        len([line for line in lines if "ServingRuntime/default/refused-rt cannot run" in line]) == 1
    )
    for runtime in whys:
        assert cli(up, "delete", "isvc", f"uses-{runtime}").returncode == 0


TWINS = """
apiVersion: serving.kserve.io/v1alpha1
kind: Predictor
metadata:
  name: twin
spec:
  modelType:
    name: sklearn
  storage:
    path: v1/model.skops
    parameters:
      type: pvc
      name: claim
---
""" + "---".join(
    ISVC.format(name=name, format="sklearn", uri="pvc://claim/v1/model.skops")
    for name in ("twin", "neighbour-a", "neighbour-b")
)


def test_a_predictor_and_an_inference_service_of_one_name_block_nothing(up: Up) -> None:
    done = apply(up, TWINS)
    assert done.returncode == 0, done.stderr
    for name in ("neighbour-a", "neighbour-b"):
        wait_for_status(up, name, lambda s: active_model_state(s) == "Loaded", "Loaded")
        assert infer(up, name).shape == (1,)
    # The Predictor came first in the file: it keeps the vmodel name.
    refused = wait_for_status(
        up,
        "twin",
        lambda s: last_failure(s).get("reason") == "InvalidPredictorSpec",
        "the conflict",
    )
    assert last_failure(refused)["message"].startswith(
        "a Predictor named twin already owns vmodel twin in namespace default"
    )
    wait_for_status(
        up, "twin", lambda s: active_model_state(s) == "Loaded", "Loaded", kind="predictor"
    )
    assert up.management.vmodel("twin", owner="ksp").targetModelId.startswith("twin__ksp-")
    lines = up.log.read_text(errors="replace").splitlines()
    assert len([line for line in lines if "InferenceService/default/twin refused" in line]) == 1
    for kind, name in [("isvc", n) for n in ("twin", "neighbour-a", "neighbour-b")] + [
        ("predictor", "twin")
    ]:
        assert cli(up, "delete", kind, name).returncode == 0


def test_delete_removes_the_vmodel_and_unknown_names_fail(up: Up) -> None:
    wait_status(up, "example", available=True)
    done = cli(up, "delete", "isvc", "example")
    assert done.returncode == 0, done.stderr

    def gone() -> bool:
        try:
            infer(up, "example")
        except InferenceServerException as exc:
            return "NOT_FOUND" in str(exc) or "not registered" in str(exc)
        return False

    wait_until(gone, 30, "example is no longer served")
    missing = cli(up, "delete", "isvc", "example")
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    bad = cli(up, "apply", "-f", "-")
    assert bad.returncode == 1  # a refused apply, as kubectl's
    assert "no resources" in bad.stderr


def test_get_watch_prints_a_row_per_change_and_lists_shipped_runtimes(up: Up) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "meshserve", "get", "isvc", "-w", "--data-dir", str(up.data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert watcher.stdout is not None
        header = watcher.stdout.readline().split()
        assert header == [
            "NAME", "URL", "READY", "ACTIVEMODEL", "TARGETMODEL", "TRANSITION", "AGE"
        ]  # fmt: skip
        done = apply(
            up, ISVC.format(name="watched", format="sklearn", uri="pvc://claim/v1/model.skops")
        )
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = watcher.stdout.readline()
            lines.append(line)
            fields = line.split()
            if fields[:1] == ["watched"] and fields[2] == "True":
                break
        else:
            raise AssertionError(f"no ready row for 'watched' in {lines}")
        assert fields[3:6] == ["Loaded", "-", "UpToDate"]
        assert fields[6].endswith("s")  # AGE: seconds old
    finally:
        watcher.kill()
        watcher.wait(10)
        if watcher.stdout is not None:
            watcher.stdout.close()
    # Rows for the same resource repeat only when something changed.
    assert len([line for line in lines if line.startswith("watched ")]) <= 4
    shipped = cli(up, "get", "clusterservingruntime")
    names = [line.split()[0] for line in shipped.stdout.splitlines()[1:]]
    assert {"meshserve-builtin", "meshserve-pickle", "meshserve-mlserver"} <= set(names)
    assert cli(up, "delete", "isvc", "watched").returncode == 0
