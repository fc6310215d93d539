"""The resource commands (`meshserve apply/get/describe/delete`) against a
running `up`, found through its data dir, and inference on what they serve,
for the integration tests."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import tritonclient.grpc as triton_grpc
import yaml
from tritonclient.utils import np_to_triton_dtype

from tests.integration._mesh import wait_until

__all__ = [
    "ISVC",
    "ISVC_ON_RUNTIME",
    "HasDataDir",
    "Serving",
    "active_model_state",
    "apply",
    "cli",
    "infer",
    "isvc",
    "jsonpath",
    "last_failure",
    "serving_loop",
    "status",
    "status_field",
    "wait_for_status",
    "wait_status",
]

STATUS_TIMEOUT_S = 30.0

ISVC = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: {name}
  annotations:
    serving.kserve.io/deploymentMode: ModelMesh
spec:
  predictor:
    model:
      modelFormat:
        name: {format}
      storageUri: {uri}
"""
"""An InferenceService in the ``predictor.model`` form: fill in name, format, uri."""

ISVC_ON_RUNTIME = ISVC + "      runtime: {runtime}\n"
"""``ISVC`` naming its runtime: fill in name, format, uri, runtime."""


def isvc(
    name: str,
    *,
    namespace: str = "default",
    format: str = "sklearn",
    uri: str | None = None,
    key: str | None = None,
    path: str | None = None,
    parameters: dict[str, str] | None = None,
    runtime: str | None = None,
) -> str:
    """An InferenceService (``predictor.model`` form) as YAML: ``uri`` for a
    storageUri, or ``key`` + ``path`` (+ ``parameters``) for ``storage``."""
    model: dict[str, Any] = {"modelFormat": {"name": format}}
    if runtime is not None:
        model["runtime"] = runtime
    if uri is not None:
        model["storageUri"] = uri
    if key is not None or path is not None:
        storage: dict[str, Any] = {"key": key, "path": path}
        if parameters:
            storage["parameters"] = parameters
        model["storage"] = {k: v for k, v in storage.items() if v is not None}
    document = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
        },
        "spec": {"predictor": {"model": model}},
    }
    return yaml.safe_dump(document, sort_keys=False)


class HasDataDir(Protocol):
    """Anything that names the data dir of a running `up`."""

    @property
    def data_dir(self) -> pathlib.Path: ...


class Serving(HasDataDir, Protocol):
    """A running `up`: its data dir and its gRPC address (host:port)."""

    @property
    def grpc(self) -> str: ...


def cli(
    target: HasDataDir,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``meshserve ARGS --data-dir <target's>`` (with ``env`` as its
    whole environment, if given) and return what it did."""
    return subprocess.run(
        [sys.executable, "-m", "meshserve", *args, "--data-dir", str(target.data_dir)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        env=env,
    )


def apply(target: HasDataDir, text: str) -> subprocess.CompletedProcess[str]:
    """``meshserve apply -f -`` of a YAML text (dedented first)."""
    return cli(target, "apply", "-f", "-", stdin=textwrap.dedent(text))


def status(target: HasDataDir, kind: str, name: str) -> dict[str, Any]:
    """The status `get KIND NAME -o json` shows ({} before the controller wrote one)."""
    done = cli(target, "get", kind, name, "-o", "json")
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout).get("status", {})
    return found


_FILTER = re.compile(r"\[\?\(@\.(\w+)==['\"]([^'\"]*)['\"]\)\]")


def jsonpath(document: Any, path: str) -> Any:
    """What kubectl's ``-o jsonpath`` gives for the simple paths CRD printer
    columns and scripts use: ``.a.b``, and list filters ``[?(@.k=='v')]``
    (the first match). None where the path leads nowhere."""
    found = document
    for step in re.findall(r"\.\w+|\[\?\(@\.\w+==['\"][^'\"]*['\"]\)\]", path):
        if step.startswith("."):
            found = found.get(step[1:]) if isinstance(found, dict) else None
            continue
        match = _FILTER.fullmatch(step)
        assert match is not None, step
        key, value = match.groups()
        items = found if isinstance(found, list) else []
        found = next((i for i in items if isinstance(i, dict) and i.get(key) == value), None)
    return found


_FIELDS = {
    "InferenceService": {
        "ready": ".conditions[?(@.type=='Ready')].status",
        "activeModelState": ".modelStatus.states.activeModelState",
        "targetModelState": ".modelStatus.states.targetModelState",
        "transitionStatus": ".modelStatus.transitionStatus",
        "lastFailureInfo": ".modelStatus.lastFailureInfo",
        "totalCopies": ".modelStatus.copies.totalCopies",
        "failedCopies": ".modelStatus.copies.failedCopies",
    },
    "Predictor": {"ready": ".available"},
}
"""Where a status field is in each kind's status: an InferenceService's is
KServe's v1beta1 shape; a Predictor's is flat (v1alpha1), ``ready`` being
its ``available``."""

_KINDS = {"isvc": "InferenceService", "inferenceservice": "InferenceService"}


def status_field(found: dict[str, Any], field: str, *, kind: str = "isvc") -> Any:
    """The ``field`` of a ``kind`` status (see ``_FIELDS``): ``ready`` is
    True/False (Ready condition True/False; None while Unknown or absent)."""
    resolved = _KINDS.get(kind.lower(), kind.capitalize())
    value = jsonpath(found, _FIELDS.get(resolved, {}).get(field, f".{field}"))
    if field == "ready" and isinstance(value, str):
        return {"True": True, "False": False}.get(value)
    return value


def active_model_state(found: dict[str, Any], *, kind: str = "isvc") -> str | None:
    """A status's active model state (None before one is written)."""
    state: str | None = status_field(found, "activeModelState", kind=kind)
    return state


def last_failure(found: dict[str, Any], *, kind: str = "isvc") -> dict[str, Any]:
    """A status's lastFailureInfo ({} when there is none)."""
    failure: dict[str, Any] = status_field(found, "lastFailureInfo", kind=kind) or {}
    return failure


def wait_for_status(
    target: HasDataDir,
    name: str,
    check: Callable[[dict[str, Any]], bool],
    what: str,
    *,
    kind: str = "isvc",
    timeout: float = STATUS_TIMEOUT_S,
) -> dict[str, Any]:
    """Wait until ``check`` holds for the status of ``kind``/``name``;
    returns it. The failure names ``what`` and the last status seen."""
    last: dict[str, Any] = {}

    def matches() -> bool:
        nonlocal last
        last = status(target, kind, name)
        return check(last)

    try:
        wait_until(matches, timeout, f"{kind}/{name}: {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {last}") from None
    return last


def wait_status(
    target: HasDataDir,
    name: str,
    *,
    kind: str = "isvc",
    timeout: float = STATUS_TIMEOUT_S,
    **expected: Any,
) -> dict[str, Any]:
    """Wait until the status of ``kind``/``name`` has every ``expected``
    field (:func:`status_field`: ``ready=True``, ``activeModelState=...``);
    returns it. The failure names the last status seen."""
    return wait_for_status(
        target,
        name,
        lambda found: all(status_field(found, k, kind=kind) == v for k, v in expected.items()),
        f"status {expected}",
        kind=kind,
        timeout=timeout,
    )


def infer(target: Serving, name: str, rows: np.ndarray | None = None) -> np.ndarray:
    """The ``predict`` output of a tabular model for ``rows`` (default: one
    row of ones, FP32), over tritonclient gRPC; input ``input-0``."""
    output: np.ndarray | None = infer_result(target.grpc, name, rows).as_numpy("predict")
    assert output is not None
    return output


def infer_result(
    address: str,
    name: str,
    rows: np.ndarray | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> triton_grpc.InferResult:
    """tritonclient gRPC's result for ``rows`` (as :func:`infer`) sent to
    ``address`` (host:port) with ``headers`` as call metadata."""
    data = np.ones((1, 4), dtype=np.float32) if rows is None else rows
    client = triton_grpc.InferenceServerClient(address)
    try:
        tensor = triton_grpc.InferInput("input-0", list(data.shape), np_to_triton_dtype(data.dtype))
        tensor.set_data_from_numpy(data)
        return client.infer(name, [tensor], headers=headers, client_timeout=30)
    finally:
        client.close()


@dataclasses.dataclass
class ServingLoop:
    """What a background request loop saw."""

    served: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)


@contextlib.contextmanager
def serving_loop(
    target: Serving, name: str, x: np.ndarray | None = None, *, limit_s: float = 90
) -> Iterator[ServingLoop]:
    """Infer ``name`` in a loop (every 20 ms, at most ``limit_s``) while the
    block runs; every failure is recorded, with its message."""
    seen = ServingLoop()
    stop = threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + limit_s
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                infer(target, name, x)
                seen.served += 1
            except Exception as exc:  # every failure counts
                seen.failures.append(str(exc))
            time.sleep(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(30)
