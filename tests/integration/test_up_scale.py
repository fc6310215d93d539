"""100,000 registered models and InferenceServices (and 10,000 vmodels) on
one `meshserve up`: it starts, and `models list`, `get isvc` and `vmodels
list` return every one of them (one gRPC message cannot hold 100,000: they
come streamed in chunks; vmodels take the same path, fewer keep the test
short, and bench/scale.py lists 100,000). The records are written into the store before `up` starts
(bench/scale.py's seed_store), so that the test spends its time on the
server and the CLI, not on 100,000 registration calls. No timings are
asserted: bench/scale.py measures them."""

from __future__ import annotations

import asyncio
import importlib
import json
import pathlib
import subprocess
import sys
import urllib.request
from types import ModuleType
from typing import Any

import pytest

from tests.integration._up import run_up

pytestmark = pytest.mark.integration

COUNT = 100_000
VMODELS = 10_000
BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench"


def _scale_bench() -> ModuleType:
    # As tests/unit/project/test_bench_mesh.py: the bench imports siblings
    # as top-level modules.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("scale")


def _cli(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "meshserve", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_listings_at_100k_registrations_return_every_entry(tmp_path: pathlib.Path) -> None:
    scale = _scale_bench()
    data_dir = tmp_path / "data"
    asyncio.run(scale.seed_store(data_dir, models=COUNT, vmodels=VMODELS, isvcs=COUNT))

    with run_up(data_dir, env=scale.UP_ENV) as up:
        endpoints = json.loads((data_dir / "endpoints.json").read_text())
        with urllib.request.urlopen(endpoints["instances"][0]["metrics"], timeout=30) as reply:
            metrics = reply.read().decode()
        models = _cli("models", "list", "--endpoint", up.grpc)["models"]
        vmodels = _cli("vmodels", "list", "--endpoint", up.grpc)["vModels"]
        isvcs = _cli("get", "isvc", "--data-dir", str(data_dir))["items"]

    # No series per model (metrics.perModel is off): a scrape stays small.
    assert "m-000000" not in metrics
    assert len(metrics) < 200_000
    assert len(models) == COUNT
    assert [m["modelId"] for m in models] == [f"m-{i:06d}" for i in range(COUNT)]
    assert models[VMODELS - 1]["vModelIds"] == [f"v-{VMODELS - 1:06d}"]
    assert models[VMODELS]["vModelIds"] == []
    assert [v["vModelId"] for v in vmodels] == [f"v-{i:06d}" for i in range(VMODELS)]
    assert [d["metadata"]["name"] for d in isvcs] == [f"isvc-{i:06d}" for i in range(COUNT)]
