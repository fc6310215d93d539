"""The cluster-scoped operator (``--clusterwide``) against kmock's
Kubernetes API emulator and a real etcd: every namespace labelled
``modelmesh-enabled: "true"`` is served, a ClusterServingRuntime is usable
from each, the others are left alone; labelling and unlabelling a namespace
takes its resources up and lets them go; its API calls are the ones the
cluster scope's RBAC grants."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from meshserve.operator._cluster import FINALIZER
from tests.integration._etcd import EtcdServer
from tests.integration._mesh import make_model
from tests.integration._operator import Cluster, assert_api_use, running_cluster, wait_for
from tests.integration._resources import isvc

RUNTIME = "cluster-runtime"
NAMESPACED_RUNTIME = "team-runtime"
TEAM_DEPLOYMENT = f"modelmesh-serving-{NAMESPACED_RUNTIME}"
SERVED = ("team-a", "team-b")
UNLABELLED = "team-c"
ENABLED = "modelmesh-enabled"


def _namespace(name: str, *, enabled: bool | None) -> dict[str, Any]:
    labels = {} if enabled is None else {ENABLED: "true" if enabled else None}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _cluster_runtime() -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ClusterServingRuntime",
        "metadata": {"name": RUNTIME},
        "spec": {
            "multiModel": True,
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True}],
            "builtInAdapter": {"serverType": "mlserver", "runtimeManagementPort": 8001},
            "containers": [{"name": "mlserver", "image": "seldonio/mlserver:1.6.1"}],
        },
    }


def _namespaced_runtime(namespace: str) -> dict[str, Any]:
    runtime = _cluster_runtime()
    runtime["kind"] = "ServingRuntime"
    runtime["metadata"] = {"name": NAMESPACED_RUNTIME, "namespace": namespace}
    return runtime


def _isvc(model: pathlib.Path, namespace: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        isvc("example", namespace=namespace, path=str(model), runtime=RUNTIME)
    )
    return document


async def _vmodels(cluster: Cluster) -> set[str]:
    async with cluster.registry() as registry:
        return set(registry.vmodels)


async def _isvc_in(cluster: Cluster, namespace: str) -> dict[str, Any]:
    found = await cluster.get("InferenceService", "example", namespace=namespace)
    assert found is not None
    return found


async def _served(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    """The InferenceService of ``namespace``, once it holds the finalizer
    and a status in KServe's shape, and its vmodel is in etcd."""
    found = await _isvc_in(cluster, namespace)
    held = FINALIZER in found["metadata"].get("finalizers", [])
    status = (found.get("status") or {}).get("modelStatus")
    registered = f"{namespace}/example" in await _vmodels(cluster)
    return found if held and status and registered else None


async def _absent(cluster: Cluster, kind: str, name: str, *, namespace: str) -> bool:
    return await cluster.get(kind, name, namespace=namespace) is None


def _untouched(found: dict[str, Any]) -> bool:
    return not found["metadata"].get("finalizers") and not found.get("status")


async def test_labelled_namespaces_are_served_with_a_cluster_runtime(
    etcd: EtcdServer, tmp_path: pathlib.Path
) -> None:
    model = make_model(tmp_path / "models" / "example.skops")
    async with running_cluster(etcd, tmp_path) as cluster:
        for name in SERVED:
            await cluster.apply(_namespace(name, enabled=True))
        await cluster.apply(_namespace(UNLABELLED, enabled=None))
        await cluster.apply(_cluster_runtime())
        await cluster.apply(_namespaced_runtime("team-a"))
        for name in (*SERVED, UNLABELLED):
            await cluster.apply(_isvc(model, name))
        cluster.start_operator("op-0", clusterwide=True)

        # Each labelled namespace's InferenceService: its vmodel (a
        # namespaced id) on the cluster runtime, status and finalizer.
        for name in SERVED:
            found = await wait_for(lambda n=name: _served(cluster, n), what=f"{name} served")
            assert found["status"]["modelStatus"]["transitionStatus"] in {"UpToDate", "InProgress"}
        async with cluster.registry() as registry:
            for name in SERVED:
                record = registry.vmodel(f"{name}/example")
                assert record is not None
                assert str(record.target_model_id).startswith(f"{name}/example__isvc-")
        deployment = await wait_for(
            lambda: cluster.get("Deployment", f"modelmesh-serving-{RUNTIME}"),
            what="the cluster runtime's Deployment",
        )
        assert deployment["spec"]["replicas"] == 1

        async def runtime_status() -> dict[str, Any] | None:
            found = await cluster.get("ClusterServingRuntime", RUNTIME)
            return (found or {}).get("status")

        await wait_for(runtime_status, what="the ClusterServingRuntime's status")
        # A namespace's own ServingRuntime: its Deployment in that namespace.
        await wait_for(
            lambda: cluster.get("Deployment", TEAM_DEPLOYMENT, namespace="team-a"),
            what="team-a's runtime Deployment",
        )
        # ... behind the mesh's Services there (a Service selects its namespace's pods).
        await wait_for(
            lambda: cluster.get("Service", "modelmesh-serving", namespace="team-a"),
            what="team-a's modelmesh-serving Service",
        )
        assert await cluster.get("Service", "modelmesh-serving", namespace="team-b") is None

        # The unlabelled namespace's is left alone: no vmodel, no finalizer, no status.
        assert f"{UNLABELLED}/example" not in await _vmodels(cluster)
        assert _untouched(await _isvc_in(cluster, UNLABELLED))

        # Labelled later: taken up.
        await cluster.apply(_namespace(UNLABELLED, enabled=True))
        await wait_for(lambda: _served(cluster, UNLABELLED), what=f"{UNLABELLED} served")

        # Unlabelled (as upstream, which stops serving the namespace): its
        # vmodel leaves the mesh and the operator's finalizer the object,
        # so that deleting it does not wait on an operator that no longer
        # watches it; the others are served on.
        await cluster.apply(_namespace("team-a", enabled=False))

        async def let_go() -> bool:
            found = await _isvc_in(cluster, "team-a")
            return "team-a/example" not in await _vmodels(cluster) and not found["metadata"].get(
                "finalizers"
            )

        await wait_for(let_go, what="team-a's InferenceService let go")
        # ... and its runtime Deployment and Services are deleted (as upstream).
        for kind, name in (
            ("Deployment", TEAM_DEPLOYMENT),
            ("Service", "modelmesh-serving"),
            ("Service", "modelmesh-serving-internal"),
        ):
            await wait_for(
                lambda k=kind, n=name: _absent(cluster, k, n, namespace="team-a"),
                what=f"team-a's {kind} {name} deleted",
            )
        assert await cluster.get("Service", "modelmesh-serving") is not None
        assert {"team-b/example", f"{UNLABELLED}/example"} <= await _vmodels(cluster)
        await cluster.delete("InferenceService", "example", namespace="team-a")
        assert await cluster.get("InferenceService", "example", namespace="team-a") is None

        # Labelled again: served again.
        await cluster.apply(_namespace("team-a", enabled=True))
        await wait_for(lambda: _served(cluster, "team-b"), what="team-b still served")
        await cluster.apply(_isvc(model, "team-a"))
        await wait_for(lambda: _served(cluster, "team-a"), what="team-a served again")

        await cluster.stop_operator("op-0")
        assert_api_use(cluster.emulator, agent="meshserve-operator/op-0", clusterwide=True)
