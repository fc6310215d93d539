"""Registered-model scale: a `meshserve up` whose store holds N registered
models, N vmodels and N InferenceServices (100,000 each by default).

    python bench/scale.py [--count N] [--repeat N] [--json]

The records are written straight into the data dir's store (one
transaction per kind, :func:`seed_store`) before `up` starts, so what is
measured is the server, not a registration loop: the time from starting
`up` to its ``ready`` line (the registry's mirror read whole), a metrics
scrape (median of ``--repeat``), and ``meshserve models list``, ``vmodels
list`` and ``get isvc`` with ``-o json`` (each checked to return all N).
The controller is off (``control.controllerEnabled``): the documents are
listed as stored, not reconciled into N more models. With --json the last
line is one JSON object. docs/benchmarks.md has a measured run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from meshserve.registry import ModelRecord, VModelRecord
from meshserve.registry._records import encode_record
from meshserve.registry._registry import MODELS_PREFIX, VMODELS_PREFIX
from meshserve.settings import load_settings
from meshserve.store import PutOp, open_store

__all__ = ["run_scale", "seed_store", "up_command"]

_RESOURCES_PREFIX = "resources/"  # controller/_resource_store.py's layout
_READY = re.compile(rb"meshserve up: ready")
UP_ENV = {"MESHSERVE_CONTROL__CONTROLLER_ENABLED": "false"}


def _isvc(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": f"isvc-{index:06d}",
            "namespace": "default",
            "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
        },
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"s3://models/m-{index:06d}",
                }
            }
        },
    }


async def seed_store(data_dir: pathlib.Path, *, models: int, vmodels: int, isvcs: int) -> None:
    """Write models ``m-000000``..., vmodels ``v-000000``... (each on the
    model of its number) and InferenceServices ``isvc-000000``... into the
    store of ``data_dir`` (made if missing), as `meshserve up` would find
    them after that many registrations; one transaction per kind."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = load_settings(overrides={"data_dir": data_dir})
    model_ops = [
        PutOp(
            MODELS_PREFIX + f"m-{i:06d}",
            encode_record(ModelRecord(model_id=f"m-{i:06d}", type="sklearn", path=f"m/{i}")),
        )
        for i in range(models)
    ]
    vmodel_ops = [
        PutOp(
            VMODELS_PREFIX + f"v-{i:06d}",
            encode_record(
                VModelRecord(
                    vmodel_id=f"v-{i:06d}",
                    active_model_id=f"m-{i:06d}",
                    target_model_id=f"m-{i:06d}",
                )
            ),
        )
        for i in range(vmodels)
    ]
    isvc_ops = [
        PutOp(
            f"{_RESOURCES_PREFIX}InferenceService/default/isvc-{i:06d}",
            json.dumps(_isvc(i)).encode(),
        )
        for i in range(isvcs)
    ]
    async with open_store(settings) as store:
        for ops in (model_ops, vmodel_ops, isvc_ops):
            if ops:
                await store.txn((), ops)


def up_command(data_dir: pathlib.Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "meshserve",
        "up",
        "--data-dir",
        str(data_dir),
        "--grpc-port",
        "0",
        "--rest-port",
        "0",
        "--metrics-port",
        "0",
    ]


def _cli(*args: str) -> tuple[float, Any]:
    """Seconds a `meshserve ARGS -o json` took, and its parsed output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "meshserve", *args, "-o", "json"],
        capture_output=True,
        check=True,
        timeout=300,
    )
    return time.perf_counter() - start, json.loads(done.stdout)


def _scrape(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        reply.read()
    return time.perf_counter() - start


def _wait_ready(proc: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        if _READY.search(line):
            return
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"`meshserve up` not ready within {timeout_s} s (exit {proc.poll()})")


def run_scale(work: pathlib.Path, *, count: int, repeat: int = 5) -> dict[str, Any]:
    """Seed, start `up`, measure; `up` is always stopped."""
    data_dir = work / "data"
    start = time.perf_counter()
    asyncio.run(seed_store(data_dir, models=count, vmodels=count, isvcs=count))
    seeded_s = time.perf_counter() - start
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")} | UP_ENV
    with (work / "up.log").open("wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(up_command(data_dir), stdout=subprocess.PIPE, stderr=log, env=env)
        try:
            _wait_ready(proc, timeout_s=300)
            ready_s = time.perf_counter() - start
            endpoints = json.loads((data_dir / "endpoints.json").read_text())
            metrics_url = endpoints["instances"][0]["metrics"]
            scrapes = [_scrape(metrics_url) for _ in range(repeat)]
            endpoint = ("--endpoint", endpoints["grpc"])
            models_s, models = _cli("models", "list", *endpoint)
            vmodels_s, vmodels = _cli("vmodels", "list", *endpoint)
            isvcs_s, isvcs = _cli("get", "isvc", "--data-dir", str(data_dir))
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return {
        "count": count,
        "seed_s": round(seeded_s, 2),
        "startup_ready_s": round(ready_s, 2),
        "metrics_scrape_ms_p50": round(statistics.median(scrapes) * 1000, 1),
        "models_list_s": round(models_s, 2),
        "models_listed": len(models.get("models", [])),
        "vmodels_list_s": round(vmodels_s, 2),
        "vmodels_listed": len(vmodels.get("vModels", [])),
        "get_isvc_s": round(isvcs_s, 2),
        "isvcs_listed": len(isvcs["items"]),
    }


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5, help="metrics scrapes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="meshserve-scale-") as work:
        result = run_scale(pathlib.Path(work), count=args.count, repeat=args.repeat)
    for key, value in result.items():
        print(f"{key:24} {value}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
