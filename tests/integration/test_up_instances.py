"""``meshserve up --instances N`` and meshes that share one etcd."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from tests._processes import meshserve, wait_for_line
from tests.integration._etcd import run_etcd
from tests.integration._mesh import make_model, wait_until
from tests.integration._up import Management

pytestmark = pytest.mark.timeout(180)


def _infer(address: str, model: str) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(url=address)
    try:
        data = np.ones((1, 4), dtype=np.float32)
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(data)
        output = client.infer(model, [tensor], client_timeout=30).as_numpy("predict")
        assert output is not None
        return output
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_up_runs_n_instances_behind_one_address_and_stops_them_all(
    tmp_path: pathlib.Path,
) -> None:
    model = make_model(tmp_path / "models" / "m.skops")
    register = tmp_path / "models.yaml"
    register.write_text(
        "models:\n"
        + "".join(f"  - {{name: m{i}, type: sklearn, path: models/m.skops}}\n" for i in range(4))
    )
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0", "--register", str(register)]
    with meshserve(args) as proc:
        wait_for_line(proc, r"meshserve up: ready", timeout=120)
        endpoints = json.loads((data / "endpoints.json").read_text())
        instances = endpoints["instances"]
        assert len(instances) == 2
        assert instances[0]["grpc"] != instances[1]["grpc"]
        assert instances[0]["internal"] != instances[1]["internal"]
        assert endpoints["grpc"] not in {entry["grpc"] for entry in instances}
        assert endpoints["store"].startswith("etcd://127.0.0.1:")
        # Every model answers through the shared address (new connections
        # land on either instance) and through each instance's own.
        for i in range(4):
            assert _infer(endpoints["grpc"], f"m{i}").shape == (1,)
        for entry in instances:
            assert _infer(entry["grpc"], "m0").shape == (1,)
        ready = httpx.get(f"{endpoints['rest']}/v2/health/ready", timeout=10)
        assert ready.status_code == 200
        for entry in instances:
            metrics = httpx.get(entry["metrics"], timeout=10).text
            assert "modelmesh_instance_capacity_bytes" in metrics
        pids = [entry["pid"] for entry in instances]
        assert model.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def test_meshes_with_different_root_prefixes_on_one_etcd_do_not_see_each_other(
    tmp_path: pathlib.Path,
) -> None:
    model = make_model(tmp_path / "m.skops")
    with run_etcd() as etcd, contextlib.ExitStack() as stack:
        endpoints = {}
        for name in ("blue", "green"):
            data = tmp_path / name
            args = ["instance", "--store", f"etcd://{etcd.endpoint}", "--root-prefix", name]
            args += ["--data-dir", str(data), "--grpc-port", "0", "--rest-port", "0"]
            args += ["--metrics-port", "0"]
            proc = stack.enter_context(meshserve(args))
            wait_for_line(proc, r"meshserve instance: ready", timeout=60)
            endpoints[name] = json.loads((data / "endpoints.json").read_text())["grpc"]
        blue = Management(endpoints["blue"])
        stack.callback(blue.close)
        green = Management(endpoints["green"])
        stack.callback(green.close)
        blue.register("only-blue", type="sklearn", path=model, load_now=True, sync=True)
        assert blue.status_name("only-blue") == "LOADED"
        assert green.status_name("only-blue") == "NOT_FOUND"
        with pytest.raises(InferenceServerException, match="not registered"):
            _infer(endpoints["green"], "only-blue")
        green.register("only-blue", type="sklearn", path=model)
        wait_until(lambda: green.status_name("only-blue") == "NOT_LOADED", 10, "green registers")
        assert blue.status_name("only-blue") == "LOADED"
