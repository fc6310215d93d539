"""Runtime pools: `meshserve up` runs instances for each ServingRuntime in
use, scales them to zero after the grace period, restarts crashed ones, and
two `up` supervisors on one etcd keep one controller."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import joblib
import numpy as np
import psutil
import pytest
import tritonclient.http as triton_http
from sklearn.linear_model import LogisticRegression

from tests.integration._etcd import run_etcd
from tests.integration._mesh import make_model, wait_until
from tests.integration._mlserver import mlserver_command
from tests.integration._resources import (
    ISVC,
    ISVC_ON_RUNTIME,
    apply,
    cli,
    infer,
    status_field,
    wait_status,
)
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(240)

GRACE_S = 8.0

RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  name: {name}
spec:
  multiModel: true
  replicas: 1
  supportedModelFormats:
    - name: sklearn
      autoSelect: false
  containers:
    - name: runtime
      command: {command}
"""

# A runtime of our own, run from its container's command, told where to listen.
SPI_RUNTIME = RUNTIME.format(
    name="spi-runtime",
    command=json.dumps([sys.executable, "-m", "meshserve", "runtime"])
    + "\n      args: [--listen, $(MESHSERVE_RUNTIME_LISTEN)]",
)
BROKEN_RUNTIME = RUNTIME.format(name="broken-runtime", command="[/bin/false]")


def _fitted() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    return LogisticRegression(max_iter=200).fit(x, np.arange(60) % 3), x[:5]


@pytest.fixture(scope="module")
def pvc(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("pvc")
    (root / "claim").mkdir()
    joblib.dump(_fitted()[0], root / "claim" / "model.joblib")
    make_model(root / "claim" / "model.skops")
    return root


def _env(**extra: str) -> dict[str, str]:
    return {
        # Tests run as root here, and `nobody` cannot read this Python.
        "MESHSERVE_RUNTIME__RUN_AS_USER": "",
        "MESHSERVE_CONTROL__SCALE_TO_ZERO_GRACE_PERIOD_S": str(GRACE_S),
        "MESHSERVE_CONTROL__RESTART_BACKOFF_INITIAL_S": "0.2",
        "MESHSERVE_CONTROL__ALLOWED_RUNTIME_IMAGES": json.dumps([sys.executable, "/bin/false"]),
        "MESHSERVE_MESH__PUBLISH_INTERVAL_S": "0.5",
        "MESHSERVE_CONTROL__MLSERVER_EXECUTABLE": mlserver_command(),
        "MESHSERVE_CONTROL__PICKLE_NAMESPACES": '["default"]',
        **extra,
    }


@pytest.fixture(scope="module")
def up(pvc: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data = tmp_path_factory.mktemp("pools")
    with run_up(data, args=["--pvc-root", str(pvc)], env=_env()) as running:
        yield running


def _pool_pids(up: Up, runtime: str) -> dict[str, int]:
    """Live pool instances of ``runtime``: index -> pid."""
    found: dict[str, int] = {}
    for path in sorted((up.data_dir / "pools" / runtime).glob("*/endpoints.json")):
        try:
            pid = json.loads(path.read_text())["pid"]
        except FileNotFoundError:
            continue  # being restarted
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            found[path.parent.name] = pid
    return found


def _gone(pids: dict[str, int]) -> bool:
    return not any(
        psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        for p in pids.values()
    )


def test_a_pickle_model_is_refused_by_default_and_served_by_the_pickle_runtime(up: Up) -> None:
    model, x = _fitted()
    uri = "pvc://claim/model.joblib"
    assert apply(up, ISVC.format(name="plain", format="sklearn", uri=uri)).returncode == 0
    refused = wait_status(up, "plain", activeModelState="FailedToLoad")
    assert "pickle" in status_field(refused, "lastFailureInfo")["message"]
    assert status_field(refused, "lastFailureInfo")["reason"] == "ModelLoadFailed"

    applied = apply(
        up,
        ISVC_ON_RUNTIME.format(
            name="pickled", format="sklearn", uri=uri, runtime="meshserve-pickle"
        ),
    )
    assert applied.returncode == 0, applied.stderr
    wait_status(up, "pickled", timeout=90, ready=True, activeModelState="Loaded")
    np.testing.assert_array_equal(infer(up, "pickled", x), model.predict(x))
    # podsPerRuntime (2) instances, each offering the runtime only.
    wait_until(lambda: len(_pool_pids(up, "meshserve-pickle")) == 2, 60, "2 instances")
    for index in ("0", "1"):
        settings = (
            up.data_dir / "pools" / "meshserve-pickle" / index / "instance.yaml"
        ).read_text()
        assert "runtime_name: meshserve-pickle" in settings
        assert "allow_pickle: true" in settings


def test_the_mlserver_runtime_serves_a_joblib_model_through_the_mesh(up: Up) -> None:
    model, x = _fitted()
    isvc = ISVC_ON_RUNTIME.format(
        name="on-mlserver",
        format="sklearn",
        uri="pvc://claim/model.joblib",
        runtime="meshserve-mlserver",
    )
    assert apply(up, isvc).returncode == 0
    wait_status(up, "on-mlserver", timeout=120, ready=True, activeModelState="Loaded")
    # Through `up`'s own address: the mesh forwards to the pool, whose
    # adapter loaded the model into a real MLServer.
    # MLServer answers [N, 1] where the built-in runtime answers [N].
    np.testing.assert_array_equal(infer(up, "on-mlserver", x).ravel(), model.predict(x))
    client = up.http_client()
    try:
        tensor = triton_http.InferInput("input-0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("on-mlserver", [tensor])
        predicted = result.as_numpy("predict")
        assert predicted is not None
        np.testing.assert_array_equal(predicted.ravel(), model.predict(x))
    finally:
        client.close()
    log = (up.data_dir / "pools" / "meshserve-mlserver" / "0" / "runtime.log").read_text()
    assert "mlserver" in log.lower()
    assert cli(up, "delete", "isvc", "on-mlserver").returncode == 0


def test_pickle_runtimes_are_refused_outside_the_allowed_namespaces(up: Up) -> None:
    isvc = ISVC_ON_RUNTIME.format(
        name="elsewhere",
        format="sklearn",
        uri="pvc://claim/model.joblib",
        runtime="meshserve-pickle",
    ).replace("  name: elsewhere\n", "  name: elsewhere\n  namespace: team-b\n")
    assert apply(up, isvc).returncode == 0

    def failure() -> dict[str, Any]:
        done = cli(up, "get", "isvc", "elsewhere", "-n", "team-b", "-o", "json")
        found: dict[str, Any] = json.loads(done.stdout).get("status", {})
        return status_field(found, "lastFailureInfo") or {}

    wait_until(lambda: failure().get("reason") == "RuntimeNotRecognized", 30, "the refusal")
    assert "control.pickleNamespaces" in failure()["message"]
    assert "team-b" in failure()["message"]
    assert cli(up, "delete", "isvc", "elsewhere", "-n", "team-b").returncode == 0


def test_a_crashed_pool_instance_is_restarted_with_backoff(up: Up) -> None:
    model, x = _fitted()
    wait_status(up, "pickled", timeout=90, ready=True)
    before = _pool_pids(up, "meshserve-pickle")
    assert len(before) == 2
    os.kill(before["0"], signal.SIGKILL)
    wait_until(
        lambda: _pool_pids(up, "meshserve-pickle").get("0") not in (None, before["0"]),
        60,
        "instance 0 restarted",
    )
    assert _pool_pids(up, "meshserve-pickle")["1"] == before["1"]
    assert "meshserve-pickle-0 exited with code -9; restarting in 0.2 s" in up.log.read_text()
    # Its copy died with it; the model is served again (reloaded on demand).
    np.testing.assert_array_equal(infer(up, "pickled", x), model.predict(x))


def test_a_runtime_pool_scales_to_zero_after_the_grace_period_and_back(up: Up) -> None:
    assert apply(up, SPI_RUNTIME).returncode == 0
    time.sleep(1.0)
    assert _pool_pids(up, "spi-runtime") == {}, "no resource uses it yet: no instance"

    isvc = ISVC_ON_RUNTIME.format(
        name="on-spi", format="sklearn", uri="pvc://claim/model.skops", runtime="spi-runtime"
    )
    assert apply(up, isvc).returncode == 0
    wait_status(up, "on-spi", timeout=90, ready=True)
    assert infer(up, "on-spi").shape == (1,)
    pids = _pool_pids(up, "spi-runtime")
    assert list(pids) == ["0"], "replicas: 1"
    log = (up.data_dir / "pools" / "spi-runtime" / "0" / "instance.log").read_text()
    assert "started runtime command" in log

    # Nothing uses it for the grace period: it goes, and `up` keeps answering.
    assert cli(up, "delete", "isvc", "on-spi").returncode == 0
    wait_until(lambda: _gone(pids), GRACE_S + 30, "the pool scaled to zero")
    assert _pool_pids(up, "spi-runtime") == {}
    client = up.grpc_client()
    try:
        assert client.is_server_ready()
        assert not client.is_model_ready("on-spi")
    finally:
        client.close()

    # A new resource brings it back.
    again = ISVC_ON_RUNTIME.format(
        name="on-spi-again", format="sklearn", uri="pvc://claim/model.skops", runtime="spi-runtime"
    )
    assert apply(up, again).returncode == 0
    wait_status(up, "on-spi-again", timeout=90, ready=True)
    assert infer(up, "on-spi-again").shape == (1,)
    assert len(_pool_pids(up, "spi-runtime")) == 1
    assert cli(up, "delete", "isvc", "on-spi-again").returncode == 0


def test_a_runtime_pool_used_again_within_the_grace_period_keeps_its_instances(
    pvc: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # A grace period no test run comes near: what is checked happens well
    # inside it, however slow the machine.
    env = _env(MESHSERVE_CONTROL__SCALE_TO_ZERO_GRACE_PERIOD_S="3600")
    with run_up(tmp_path / "data", args=["--pvc-root", str(pvc)], env=env) as up:
        assert apply(up, SPI_RUNTIME).returncode == 0
        isvc = ISVC_ON_RUNTIME.format(
            name="on-spi", format="sklearn", uri="pvc://claim/model.skops", runtime="spi-runtime"
        )
        assert apply(up, isvc).returncode == 0
        wait_status(up, "on-spi", timeout=90, ready=True)
        pids = _pool_pids(up, "spi-runtime")
        assert list(pids) == ["0"]
        # Unused for several controller passes (every 0.5 s here): kept.
        assert cli(up, "delete", "isvc", "on-spi").returncode == 0
        time.sleep(3.0)
        assert _pool_pids(up, "spi-runtime") == pids
        # Used again: the same instance serves it, none was started.
        assert apply(up, isvc).returncode == 0
        wait_status(up, "on-spi", timeout=60, ready=True)
        assert infer(up, "on-spi").shape == (1,)
        assert _pool_pids(up, "spi-runtime") == pids


def test_a_runtime_that_cannot_start_reports_runtime_unhealthy(up: Up) -> None:
    assert apply(up, BROKEN_RUNTIME).returncode == 0
    isvc = ISVC_ON_RUNTIME.format(
        name="on-broken", format="sklearn", uri="pvc://claim/model.skops", runtime="broken-runtime"
    )
    assert apply(up, isvc).returncode == 0
    status = wait_status(up, "on-broken", timeout=90, ready=False, activeModelState="FailedToLoad")
    failure = status_field(status, "lastFailureInfo")
    assert failure["reason"] == "RuntimeUnhealthy", status
    assert "broken-runtime" in failure["message"]
    # The rest of the mesh keeps serving.
    client = up.grpc_client()
    try:
        assert client.is_server_ready()
    finally:
        client.close()
    assert cli(up, "delete", "isvc", "on-broken").returncode == 0


def _leads_controller(up: Up) -> bool:
    return "leads leaderLatch/controller" in up.log.read_text()


def test_two_supervisors_on_one_etcd_keep_one_controller(
    pvc: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    env = _env(MESHSERVE_MESH__LEASE_TTL_S="2")
    with run_etcd() as etcd:
        store = ["--store", f"etcd://{etcd.endpoint}", "--pvc-root", str(pvc)]
        with (
            run_up(tmp_path / "a", args=store, env=env) as first,
            run_up(tmp_path / "b", args=store, env=env) as second,
        ):
            isvc = ISVC.format(name="shared", format="sklearn", uri="pvc://claim/model.skops")
            assert apply(first, isvc).returncode == 0
            wait_status(second, "shared", ready=True)
            wait_until(
                lambda: _leads_controller(first) or _leads_controller(second), 10, "a leader"
            )
            assert _leads_controller(first) != _leads_controller(second), "exactly one leads"
            leader, other = (first, second) if _leads_controller(first) else (second, first)

            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait(10)
            wait_until(lambda: _leads_controller(other), 30, "the other supervisor to take over")
            later = ISVC.format(name="later", format="sklearn", uri="pvc://claim/model.skops")
            assert apply(other, later).returncode == 0
            wait_status(other, "later", ready=True)
            assert infer(other, "later").shape == (1,)
