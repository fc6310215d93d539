"""Ray Serve's model multiplexing serving the mesh benchmark's models.

Run by bench/_mesh_ray.py with the Python of the Ray environment
(scripts/ray-venv), never imported by meshserve's: ``python _ray_app.py
CONFIG.json``. CONFIG names the models' .skops files, the replicas, the
models each may hold (``max_num_models_per_replica``), the CPUs Ray may use
and the HTTP port. Ray and its HTTP proxy listen on 127.0.0.1 only. Prints
``READY`` once the application answers, then serves until SIGTERM or
SIGINT, and shuts Serve and Ray down.

One HTTP POST per request (Ray Serve's own front door: its HTTP proxy is
what Serve documents first and needs no compiled protobufs of the user's):
the model id in the ``serve_multiplexed_model_id`` header, the row as JSON
``{"row": [...]}``; the answer is ``{"label": N, "replica": ID, "loads":
N}``, ``loads`` counting the models that replica has loaded so far.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import sys
import threading
import uuid
from typing import Any

import numpy as np
import ray
import skops.io
from ray import serve
from starlette.requests import Request


def _load(path: str) -> Any:
    untrusted = skops.io.get_untrusted_types(file=path)
    return skops.io.load(path, trusted=untrusted)


def build(models_per_replica: int) -> Any:
    @serve.deployment
    class Multiplexed:
        def __init__(self, paths: dict[str, str]) -> None:
            self._paths = paths
            self._replica = uuid.uuid4().hex[:8]
            self._loads = 0

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def get_model(self, model_id: str) -> Any:
            self._loads += 1
            return await asyncio.to_thread(_load, self._paths[model_id])

        async def __call__(self, request: Request) -> dict[str, Any]:
            model = await self.get_model(serve.get_multiplexed_model_id())
            row = (await request.json())["row"]
            label = int(model.predict(np.asarray([row], dtype=np.float64))[0])
            return {"label": label, "replica": self._replica, "loads": self._loads}

    return Multiplexed


def main(config_path: str) -> int:
    config = json.loads(pathlib.Path(config_path).read_text())
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ray.init(
        num_cpus=config["num_cpus"],
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=config["temp_dir"],
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": config["port"]})
        deployment = build(config["models_per_replica"]).options(
            num_replicas=config["replicas"],
            max_ongoing_requests=config["max_ongoing_requests"],
            ray_actor_options={"num_cpus": config["num_cpus"] / config["replicas"]},
        )
        serve.run(deployment.bind(config["paths"]), name="multiplexed", route_prefix="/")
        print("READY", flush=True)
        stop.wait()
    finally:
        print("stopping", flush=True)
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
