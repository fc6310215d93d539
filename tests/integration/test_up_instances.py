"""``meshserve up --instances N`` and meshes that share one etcd."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

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


def test_models_list_shows_the_mesh_view_from_every_instance(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    register = tmp_path / "models.yaml"
    register.write_text(
        "models:\n"
        f"  - {{name: used, type: sklearn, path: {model}}}\n"
        f"  - {{name: idle, type: sklearn, path: {model}, loadNow: true}}\n"
        f"  - {{name: cold, type: sklearn, path: {model}}}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("mesh:\n  lastUsePublishIntervalS: 0.5\n")
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0", "--register", str(register)]
    with meshserve([*args, "--config", str(config)]) as proc:
        wait_for_line(proc, r"meshserve up: ready", timeout=120)
        endpoints = json.loads((data / "endpoints.json").read_text())
        addresses = [entry["grpc"] for entry in endpoints["instances"]]
        assert _infer(endpoints["grpc"], "used").shape == (1,)
        wait_until(
            lambda: all("LOADED" in _list(a, "idle")["status"] for a in addresses),
            60,
            "idle loaded",
        )

        def mesh_views() -> list[dict[str, tuple[int, int, int]]]:
            """Per instance: model -> (copies, size, last use)."""
            return [
                {
                    name: (int(m["copies"]), int(m["sizeBytes"]), int(m["lastUsedTime"]))
                    for name in ("used", "idle", "cold")
                    if (m := _list(address, name))
                }
                for address in addresses
            ]

        def agreed() -> bool:
            views = mesh_views()
            used = views[0]["used"]
            # The use is in the model's record, and every instance shows it.
            return all(v == views[0] for v in views) and used[0] == 1 and used[2] > 0

        wait_until(agreed, 30, "every instance shows the same copies, sizes and last use")
        view = mesh_views()[0]
        assert view["used"][1] > 0 and view["used"][1] == view["idle"][1]
        assert view["idle"][0] == 1 and view["idle"][2] == 0  # loaded, never requested
        assert view["cold"] == (0, 0, 0)
        for address in addresses:
            listed = subprocess.run(
                [sys.executable, "-m", "meshserve", "models", "list", "--endpoint", address],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout  # fmt: skip
            rows = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
            # MODEL TYPE STATUS COPIES SIZE LAST-USED PULL VMODELS
            assert rows["idle"][3] == "1" and rows["idle"][5] == "-", listed
            assert rows["cold"][3:6] == ["0", "-", "-"], listed
            assert rows["used"][5] != "-", listed


def _list(address: str, name: str) -> dict[str, Any]:
    """``models list -o json`` on one instance: the entry of model ``name``."""
    done = subprocess.run(
        [sys.executable, "-m", "meshserve", "models", "list", "-o", "json", "--endpoint", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    models = json.loads(done.stdout)["models"]
    found: dict[str, Any] = next(m for m in models if m["modelId"] == name)
    return found
