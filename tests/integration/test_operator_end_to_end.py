"""End to end without Kubernetes: the Deployment the operator renders for
an InferenceService applied through the emulator, its pod run here as
local processes from its own command and environment, serves a real
inference (the model loaded from a PVC path, as on a cluster)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import numpy as np
import tritonclient.http as triton_http
import yaml

from tests.integration._etcd import EtcdServer
from tests.integration._mesh import make_model
from tests.integration._operator import NAMESPACE, running_cluster, wait_for
from tests.integration._pods import prepare_pod
from tests.integration._resources import isvc

DEPLOYMENT = "modelmesh-serving-meshserve-builtin"


async def test_a_rendered_pod_run_locally_serves_an_inference_service(
    etcd: EtcdServer, tmp_path: pathlib.Path
) -> None:
    pvc = tmp_path / "pvc"
    make_model(pvc / "models-claim" / "example.skops")
    async with running_cluster(etcd, tmp_path) as cluster:
        cluster.start_operator("op-0")
        document: dict[str, Any] = yaml.safe_load(
            isvc("example", namespace=NAMESPACE, uri="pvc://models-claim/example.skops")
        )
        await cluster.apply(document)

        async def in_use() -> dict[str, Any] | None:
            found = await cluster.get("Deployment", DEPLOYMENT)
            return found if found and found["spec"].get("replicas") == 1 else None

        deployment = await wait_for(in_use, what="the built-in runtime's Deployment in use")
        pod = await prepare_pod(
            deployment,
            lookup=cluster.get,
            work=tmp_path / "pod",
            host_mounts={"/pvc_mounts": pvc},
        )
        with pod.running():

            async def loaded() -> dict[str, Any] | None:
                found = await cluster.get("InferenceService", "example")
                status = (found or {}).get("status") or {}
                states = (status.get("modelStatus") or {}).get("states") or {}
                return status if states.get("activeModelState") == "Loaded" else None

            status = await wait_for(loaded, what="the model loaded in the pod", timeout_s=120)
            assert status["url"].startswith("grpc://modelmesh-serving.")
            ready = {c["type"]: c["status"] for c in status["conditions"]}
            assert ready["Ready"] == "True"

            def infer() -> np.ndarray:
                client = triton_http.InferenceServerClient(f"{pod.ip}:8008")
                try:
                    rows = np.zeros((2, 4), dtype=np.float32)
                    request = triton_http.InferInput("predict", list(rows.shape), "FP32")
                    request.set_data_from_numpy(rows)
                    result = client.infer("example", [request])
                    return result.as_numpy(result.get_response()["outputs"][0]["name"])
                finally:
                    client.close()

            predictions = await asyncio.to_thread(infer)
            assert predictions.shape[0] == 2
