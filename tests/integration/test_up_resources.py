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

import httpx
import pytest
from tritonclient.utils import InferenceServerException

from tests.integration._etcd import free_port
from tests.integration._mesh import make_model, wait_until
from tests.integration._resources import (
    ISVC,
    active_model_state,
    apply,
    cli,
    infer,
    infer_result,
    isvc,
    jsonpath,
    last_failure,
    serving_loop,
    status_field,
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
    status = wait_status(up, "example", ready=True)
    assert status_field(status, "activeModelState") == "Loaded"
    assert status_field(status, "transitionStatus") == "UpToDate"
    assert status_field(status, "totalCopies") == 1
    assert up.management.vmodel("example").activeModelId.startswith("example__isvc-")
    assert infer(up, "example").shape == (1,)
    table = cli(up, "get", "isvc")
    assert table.stdout.split("\n")[0].split() == [
        "NAME", "URL", "READY", "ACTIVEMODEL", "TARGETMODEL", "TRANSITION", "AGE"
    ]  # fmt: skip
    row = table.stdout.split("\n")[1].split()
    assert row[:4] == ["example", f"grpc://{up.grpc}", "True", "Loaded"]
    assert status["url"] == f"grpc://{up.grpc}"


def test_an_update_moves_to_the_new_model_without_failed_requests(up: Up) -> None:
    wait_status(up, "example", ready=True)
    before = up.management.vmodel("example").activeModelId
    with serving_loop(up, "example") as loop:
        done = apply(
            up, ISVC.format(name="example", format="sklearn", uri="pvc://claim/v2/model.skops")
        )
        assert done.stdout.strip() == "inferenceservice/example configured"
        status = wait_status(up, "example", transitionStatus="UpToDate", activeModelState="Loaded")
        wait_until(lambda: up.management.vmodel("example").activeModelId != before, 30, "new model")
        time.sleep(0.5)
    assert loop.failures == []
    assert loop.served > 5
    assert status["observedGeneration"] == 2
    # The old model was auto-deleted once the vmodel moved on.
    wait_until(lambda: before not in up.management.models(), 30, "old model removed")
    assert up.management.vmodel("example").activeModelId in up.management.models()


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
            failure = status_field(status, "lastFailureInfo") or {}
            return failure.get("reason") == reason

        wait_until(failed, 30, f"{name} fails with {reason}: {status}")
        assert status_field(status, "ready") is False
        failure = status_field(status, "lastFailureInfo")
        assert failure["message"]
        # As upstream: the revision it is about, and when.
        assert failure["modelRevisionName"].startswith(f"{name}__isvc-"), failure
        assert failure["time"].endswith("Z"), failure
    assert status_field(status_of(up, "isvc", "invalid"), "transitionStatus") == "InvalidSpec"
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
    wait_status(up, "old-form", ready=True)
    assert infer(up, "old-form").shape == (1,)
    status = status_of(up, "predictor", "pred")
    wait_until(lambda: status_of(up, "predictor", "pred").get("available") is True, 30, "predictor")
    assert infer(up, "pred").shape == (1,)
    described = cli(up, "describe", "isvc", "old-form")
    assert described.returncode == 0, described.stderr
    assert "activeModelState: Loaded" in described.stdout
    assert "httpEndpoint: " in cli(up, "describe", "predictor", "pred").stdout
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
        up,
        "twin",
        lambda s: active_model_state(s, kind="predictor") == "Loaded",
        "Loaded",
        kind="predictor",
    )
    assert up.management.vmodel("twin", owner="ksp").targetModelId.startswith("twin__ksp-")
    lines = up.log.read_text(errors="replace").splitlines()
    assert len([line for line in lines if "InferenceService/default/twin refused" in line]) == 1
    for kind, name in [("isvc", n) for n in ("twin", "neighbour-a", "neighbour-b")] + [
        ("predictor", "twin")
    ]:
        assert cli(up, "delete", kind, name).returncode == 0


def test_delete_removes_the_vmodel_and_unknown_names_fail(up: Up) -> None:
    wait_status(up, "example", ready=True)
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


def test_kserve_status_reads_and_wait_in_a_namespace(up: Up) -> None:
    namespace = "modelmesh-serving"
    at = ("-n", namespace)
    served = isvc("in-ns", namespace=namespace, uri="pvc://claim/v1/model.skops")
    assert apply(up, served).returncode == 0
    waited = cli(
        up, "wait", "--for=condition=Ready", "isvc/in-ns", *at, "--timeout", "60s",
        "--endpoint", up.grpc,
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "inferenceservice/in-ns condition met"

    # What `kubectl get isvc -o jsonpath=...` reads, and KServe's printer columns.
    shown = json.loads(cli(up, "get", "isvc", "in-ns", *at, "-o", "json").stdout)
    url = f"grpc://{up.grpc}"
    assert jsonpath(shown, ".status.modelStatus.states.activeModelState") == "Loaded"
    assert jsonpath(shown, ".status.modelStatus.transitionStatus") == "UpToDate"
    assert jsonpath(shown, ".status.modelStatus.copies.totalCopies") == 1
    assert jsonpath(shown, ".status.url") == url
    assert jsonpath(shown, ".status.address.url") == url
    assert jsonpath(shown, ".status.components.predictor.grpcUrl") == url
    assert jsonpath(shown, ".status.components.predictor.restUrl").startswith("http://")
    assert jsonpath(shown, ".status.conditions[?(@.type=='Ready')].status") == "True"
    assert jsonpath(shown, ".status.conditions[?(@.type=='PredictorReady')].status") == "True"
    assert jsonpath(shown, ".status.conditions[?(@.type=='Ready')].lastTransitionTime")
    assert jsonpath(shown, ".status.observedGeneration") == 1
    table = cli(up, "get", "isvc", *at).stdout.splitlines()
    assert table[1].split()[:4] == ["in-ns", url, "True", "Loaded"], table

    # One that never becomes Ready: exit 1 once --timeout runs out, saying why.
    never = isvc("never", namespace=namespace, format="tensorflow", uri="pvc://claim/v1/x")
    assert apply(up, never).returncode == 0
    timed_out = cli(up, "wait", "--for=condition=Ready", "isvc", "never", *at, "--timeout", "3s")
    assert timed_out.returncode == 1, timed_out.stderr
    assert "timed out waiting for condition Ready=True on inferenceservice/never" in (
        timed_out.stderr
    )
    assert "NoSupportingRuntime" in timed_out.stderr
    failed = cli(up, "wait", "--for=condition=Ready=false", "isvc/never", *at, "--timeout", "30")
    assert failed.returncode == 0, failed.stderr
    shown = json.loads(cli(up, "get", "isvc", "never", *at, "-o", "json").stdout)
    failure = jsonpath(shown, ".status.modelStatus.lastFailureInfo")
    assert failure["reason"] == "NoSupportingRuntime"
    assert failure["modelRevisionName"].startswith(f"{namespace}/never__isvc-"), failure

    # A name that is not there is exit 1 at once; --for=delete waits for the delete.
    missing = cli(up, "wait", "--for=condition=Ready", "isvc/nothing", *at, "--timeout", "60s")
    assert missing.returncode == 1
    assert "NOT_FOUND" in missing.stderr
    assert cli(up, "delete", "isvc", "never", *at).returncode == 0
    gone = cli(up, "wait", "--for=delete", "isvc/never", *at, "--timeout", "30s")
    assert gone.returncode == 0, gone.stderr


def test_a_namespaced_inference_service_answers_by_plain_name(up: Up) -> None:
    """As a client of its namespace's ModelMesh Serving Service: the status
    URLs and the plain name, the namespace selected by ``mm-namespace``
    (gRPC) or by the published restUrl itself (REST)."""
    namespace, other = "modelmesh-serving", "other-ns"
    for where, version in ((namespace, "v1"), (other, "v2")):
        served = isvc("plain", namespace=where, uri=f"pvc://claim/{version}/model.skops")
        assert apply(up, served).returncode == 0
        waited = cli(
            up, "wait", "--for=condition=Ready", "isvc/plain", "-n", where, "--timeout", "60s"
        )
        assert waited.returncode == 0, waited.stderr
    shown = json.loads(cli(up, "get", "isvc", "plain", "-n", namespace, "-o", "json").stdout)
    grpc_url = jsonpath(shown, ".status.components.predictor.grpcUrl")
    rest_url = jsonpath(shown, ".status.components.predictor.restUrl")
    assert rest_url == f"http://{up.rest}/namespaces/{namespace}/v2/models/plain"
    address = grpc_url.removeprefix("grpc://")

    for where in (namespace, other):
        result = infer_result(address, "plain", headers={"mm-namespace": where})
        assert result.get_response().model_name.startswith(f"{where}/plain__isvc-")
        assert result.as_numpy("predict") is not None
    # With no namespace selected, a plain name two namespaces have asks for one.
    with pytest.raises(InferenceServerException, match="select one with the mm-namespace"):
        infer_result(address, "plain")

    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
    with httpx.Client(timeout=30) as client:
        answer = client.post(f"{rest_url}/infer", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_name"].startswith(f"{namespace}/plain__isvc-")
        assert answer.json()["outputs"][0]["name"] == "predict"
        assert client.get(rest_url).status_code == 200
        assert client.get(f"{rest_url}/ready").json()["ready"] is True
        elsewhere = client.post(rest_url.replace(namespace, other) + "/infer", json=body)
        assert elsewhere.json()["model_name"].startswith(f"{other}/plain__isvc-")


def test_a_namespace_port_serves_plain_names_at_the_status_grpc_url(
    pvc: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """server.namespacePorts: a client taking grpcUrl verbatim, as from
    ModelMesh Serving's Service of its namespace, infers by plain name with
    no header; the main port keeps meaning ``default``."""
    namespace, port = "modelmesh-serving", free_port()
    env = {"MESHSERVE_SERVER__NAMESPACE_PORTS": json.dumps({namespace: port})}
    with run_up(tmp_path / "data", args=["--pvc-root", str(pvc)], env=env) as running:
        endpoints = json.loads((running.data_dir / "endpoints.json").read_text())
        assert endpoints["namespaces"] == {namespace: f"127.0.0.1:{port}"}
        served = isvc("plain", namespace=namespace, uri="pvc://claim/v1/model.skops")
        assert apply(running, served).returncode == 0
        waited = cli(
            running, "wait", "--for=condition=Ready", "isvc/plain", "-n", namespace,
            "--timeout", "60s",
        )  # fmt: skip
        assert waited.returncode == 0, waited.stderr
        shown = json.loads(
            cli(running, "get", "isvc", "plain", "-n", namespace, "-o", "json").stdout
        )
        grpc_url = jsonpath(shown, ".status.components.predictor.grpcUrl")
        assert grpc_url == f"grpc://127.0.0.1:{port}"
        assert jsonpath(shown, ".status.url") == grpc_url

        result = infer_result(grpc_url.removeprefix("grpc://"), "plain")
        assert result.get_response().model_name.startswith(f"{namespace}/plain__isvc-")
        assert result.as_numpy("predict") is not None
        # On the main port, with no namespace selected, the one namespace
        # that has the plain name serves it too (as its Service would).
        served = infer_result(running.grpc, "plain")
        assert served.get_response().model_name.startswith(f"{namespace}/plain__isvc-")
        with pytest.raises(InferenceServerException) as refused:
            infer_result(running.grpc, "no-such-model")
        assert refused.value.status() == "StatusCode.NOT_FOUND"
