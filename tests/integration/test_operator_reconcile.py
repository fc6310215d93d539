"""The operator against kmock's Kubernetes API emulator and a real etcd:
resources applied as ``kubectl apply`` would become Deployments, Services,
models and vmodels, and status in KServe's shape; one replica acts; the
API calls it makes are the ones its RBAC grants (``OPERATOR_API_USE``)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import yaml

from meshserve.operator._endpoints import endpoint_of_kind
from tests._processes import stop_process
from tests.integration._etcd import EtcdServer
from tests.integration._mesh import make_model
from tests.integration._operator import (
    NAMESPACE,
    Cluster,
    assert_api_use,
    running_cluster,
    wait_for,
)
from tests.integration._resources import isvc

RUNTIME = "test-runtime"
DEPLOYMENT = f"modelmesh-serving-{RUNTIME}"
VMODEL = f"{NAMESPACE}/example"


def _runtime(*, env: str = "a", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": RUNTIME, "namespace": NAMESPACE, "annotations": annotations or {}},
        "spec": {
            "multiModel": True,
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True}],
            "builtInAdapter": {"serverType": "mlserver", "runtimeManagementPort": 8001},
            "containers": [
                {
                    "name": "mlserver",
                    "image": "seldonio/mlserver:1.6.1",
                    "env": [{"name": "TEST_ENV", "value": env}],
                }
            ],
        },
    }


def _predictor(model: pathlib.Path) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "Predictor",
        "metadata": {"name": "example-predictor", "namespace": NAMESPACE},
        "spec": {
            "modelType": {"name": "sklearn"},
            "runtime": {"name": RUNTIME},
            "path": str(model),
        },
    }


def _isvc(model: pathlib.Path, *, name: str = "example") -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        isvc(name, namespace=NAMESPACE, path=str(model), runtime=RUNTIME)
    )
    return document


async def _deployment(cluster: Cluster, name: str = DEPLOYMENT) -> dict[str, Any] | None:
    return await cluster.get("Deployment", name)


def _template(deployment: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


async def _vmodel_target(cluster: Cluster, vmodel: str = VMODEL) -> str | None:
    async with cluster.registry() as registry:
        record = registry.vmodel(vmodel)
        return None if record is None else str(record.target_model_id)


async def test_a_runtime_and_an_inference_service_become_a_deployment_services_and_a_vmodel(
    etcd: EtcdServer, tmp_path: pathlib.Path
) -> None:
    model = make_model(tmp_path / "models" / "example.skops")
    async with running_cluster(etcd, tmp_path) as cluster:
        cluster.start_operator("op-0")
        await cluster.apply(_runtime())
        await cluster.apply(_isvc(model))
        await cluster.apply(_predictor(model))

        # The vmodel and its model are in the mesh's etcd (the Predictor's too).
        target = await wait_for(lambda: _vmodel_target(cluster), what="the vmodel in etcd")
        assert target.startswith(f"{NAMESPACE}/example__isvc-")
        predictor_target = await wait_for(
            lambda: _vmodel_target(cluster, f"{NAMESPACE}/example-predictor"),
            what="the Predictor's vmodel",
        )
        assert predictor_target.startswith(f"{NAMESPACE}/example-predictor__ksp-")

        # The runtime's Deployment, in use: podsPerRuntime replicas.
        deployment = await wait_for(lambda: _deployment(cluster), what="the Deployment")
        assert deployment["spec"]["replicas"] == 1
        services = await wait_for(
            lambda: cluster.get("Service", "modelmesh-serving"),
            what="the modelmesh-serving Service",
        )
        ports = {port["port"] for port in services["spec"]["ports"]}
        assert {8033, 8008} <= ports

        # KServe's status shape, and the operator's finalizer.
        async def status() -> dict[str, Any] | None:
            found = await cluster.get("InferenceService", "example")
            return (found or {}).get("status", {}).get("modelStatus") and found

        found = await wait_for(status, what="the InferenceService's status")
        assert found["metadata"]["finalizers"] == ["serving.kserve.io/meshserve-operator"]
        model_status = found["status"]["modelStatus"]
        assert model_status["states"]["activeModelState"] in {"Pending", "Loading", "Standby"}
        assert model_status["transitionStatus"] in {"UpToDate", "InProgress"}
        assert {c["type"] for c in found["status"]["conditions"]} >= {"PredictorReady", "Ready"}

        # A Predictor's status in ModelMesh Serving's v1alpha1 shape.
        async def predictor_status() -> dict[str, Any] | None:
            found = await cluster.get("Predictor", "example-predictor")
            return (found or {}).get("status", {}).get("activeModelState") and found

        predictor = await wait_for(predictor_status, what="the Predictor's status")
        assert predictor["status"]["transitionStatus"] in {"UpToDate", "InProgress"}
        await cluster.delete("Predictor", "example-predictor")

        # A resource refused: its status says why, and so does a Warning
        # Event (kubectl describe), once.
        wrong = _isvc(model, name="wrong")
        wrong["spec"]["predictor"]["model"]["runtime"] = "no-such-runtime"
        await cluster.apply(wrong)

        async def warned() -> list[dict[str, Any]]:
            events = await cluster.api.list(endpoint_of_kind("Event"), namespace=NAMESPACE)
            return [e for e in events if e["involvedObject"]["name"] == "wrong"]

        (event,) = await wait_for(warned, what="a Warning Event about the refused resource")
        assert event["type"] == "Warning" and event["reason"] == "RuntimeNotRecognized"
        assert event["involvedObject"]["kind"] == "InferenceService"
        await cluster.delete("InferenceService", "wrong")

        # A changed runtime rolls its pods: a new pod template.
        before = _template(deployment)
        await cluster.apply(_runtime(env="b"))

        async def rolled() -> dict[str, Any] | None:
            now = await _deployment(cluster)
            return now if now is not None and _template(now) != before else None

        after = _template(await wait_for(rolled, what="a new pod template"))
        assert "b" in str(after) and "'value': 'a'" not in str(after)

        # An HPA when the runtime asks for one (the Deployment leaves replicas to it).
        hpa_annotations = {
            "serving.kserve.io/autoscalerClass": "hpa",
            "serving.kserve.io/min-scale": "2",
            "serving.kserve.io/max-scale": "4",
            "serving.kserve.io/metrics": "cpu",
            "serving.kserve.io/targetUtilizationPercentage": "70",
        }
        await cluster.apply(_runtime(env="b", annotations=hpa_annotations))
        hpa = await wait_for(
            lambda: cluster.get("HorizontalPodAutoscaler", DEPLOYMENT), what="the HPA"
        )
        assert hpa["spec"]["minReplicas"] == 2 and hpa["spec"]["maxReplicas"] == 4
        assert hpa["spec"]["scaleTargetRef"]["name"] == DEPLOYMENT

        # Deleted: the vmodel goes from etcd, then the finalizer, then the object.
        await cluster.delete("InferenceService", "example")

        async def unregistered() -> bool:
            return await _vmodel_target(cluster) is None and (
                await cluster.get("InferenceService", "example") is None
            )

        await wait_for(unregistered, what="the vmodel and the InferenceService gone")

        # The runtime's last model gone: scaled to 0 after the grace period
        # (2 s), and no HPA to scale it up again.
        async def scaled_to_zero() -> bool:
            now = await _deployment(cluster)
            hpa = await cluster.get("HorizontalPodAutoscaler", DEPLOYMENT)
            return now is not None and now["spec"].get("replicas") == 0 and hpa is None

        await wait_for(scaled_to_zero, what="the Deployment scaled to 0")

        # The runtime deleted: its Deployment and HPA go.
        await cluster.delete("ServingRuntime", RUNTIME)

        async def pruned() -> bool:
            return await _deployment(cluster) is None and (
                await cluster.get("HorizontalPodAutoscaler", DEPLOYMENT) is None
            )

        await wait_for(pruned, what="the Deployment and HPA deleted")
        await cluster.stop_operator("op-0")
        assert_api_use(cluster.emulator, agent="meshserve-operator/op-0")


async def test_an_unimplemented_adapter_is_refused_in_the_runtime_status(
    etcd: EtcdServer, tmp_path: pathlib.Path
) -> None:
    async with running_cluster(etcd, tmp_path) as cluster:
        cluster.start_operator("op-0")
        runtime = _runtime()
        runtime["spec"]["builtInAdapter"] = {"serverType": "triton"}
        await cluster.apply(runtime)

        async def refused() -> dict[str, Any] | None:
            found = await cluster.get("ServingRuntime", RUNTIME)
            message = (found or {}).get("status", {}).get("message", "")
            return found if "triton" in message else None

        await wait_for(refused, what="the refusal in the runtime's status")
        assert await _deployment(cluster) is None


async def test_a_restarted_operator_resumes_without_duplicates(
    etcd: EtcdServer, tmp_path: pathlib.Path
) -> None:
    model = make_model(tmp_path / "models" / "example.skops")
    async with running_cluster(etcd, tmp_path) as cluster:
        cluster.start_operator("op-0")
        await cluster.apply(_runtime())
        await cluster.apply(_isvc(model))
        target = await wait_for(lambda: _vmodel_target(cluster), what="the vmodel")
        await wait_for(lambda: _deployment(cluster), what="the Deployment")
        await cluster.stop_operator("op-0")
        # Changed while it was down: a second InferenceService.
        await cluster.apply(_isvc(model, name="second"))
        writes_before = len(cluster.writes(agent="meshserve-operator/op-1"))
        assert writes_before == 0
        cluster.start_operator("op-1")
        await wait_for(
            lambda: _vmodel_target(cluster, f"{NAMESPACE}/second"), what="the second vmodel"
        )
        assert await _vmodel_target(cluster) == target
        rewritten = [
            (request.method, request.resource.plural)
            for request in cluster.writes(agent="meshserve-operator/op-1")
            if request.resource.plural in {"deployments", "services", "serviceaccounts"}
        ]
        assert rewritten == [], "the restarted operator wrote again what was there, unchanged"
        async with cluster.registry() as registry:
            assert sorted(registry.vmodels) == [f"{NAMESPACE}/example", f"{NAMESPACE}/second"]


async def test_of_two_replicas_one_acts(etcd: EtcdServer, tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "models" / "example.skops")
    async with running_cluster(etcd, tmp_path) as cluster:
        processes = {
            identity: cluster.start_operator_process(identity) for identity in ("op-a", "op-b")
        }
        await cluster.apply(_runtime())
        await cluster.apply(_isvc(model))
        await wait_for(lambda: _vmodel_target(cluster), what="the vmodel", timeout_s=60)
        await wait_for(lambda: _deployment(cluster), what="the Deployment")

        def acting() -> set[str]:
            return {
                identity
                for identity in processes
                if any(
                    request.resource.plural != "leases"
                    for request in cluster.writes(agent=f"meshserve-operator/{identity}")
                )
            }

        assert len(acting()) == 1, f"replicas that wrote besides the Lease: {acting()}"
        # The active one stops (SIGTERM: it releases the Lease); the other takes over.
        (active,) = acting()
        (standby,) = set(processes) - {active}
        await asyncio.to_thread(stop_process, processes[active], grace=20.0)
        assert processes[active].returncode == 0
        await cluster.apply(_isvc(model, name="second"))
        await wait_for(
            lambda: _vmodel_target(cluster, f"{NAMESPACE}/second"),
            what="the standby acting",
            timeout_s=60,
        )
        assert acting() == {active, standby}
