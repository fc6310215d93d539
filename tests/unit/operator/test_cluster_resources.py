"""The operator's view of the cluster's resources, as the controller reads it."""

from __future__ import annotations

from typing import Any

from meshserve.controller import ResourceKey
from meshserve.operator import KubeApi, KubeConnection
from meshserve.operator._cluster import FINALIZER, ClusterResources
from meshserve.operator._endpoints import INFERENCE_SERVICES, NAMESPACES, ref_of
from meshserve.operator._kube import Ref
from meshserve.operator._watches import Inputs, serves
from tests._kube_emulator import running_emulator


def _view(served_namespaces: set[str] = frozenset({"mm"})) -> ClusterResources:  # type: ignore[assignment]
    api = KubeApi(KubeConnection(server="http://127.0.0.1:9"), timeout_s=1, user_agent="t")
    return ClusterResources(
        api, admit=lambda resource: None, serves=lambda key: key.namespace in served_namespaces
    )


def _isvc(
    name: str, *, namespace: str = "mm", mode: str | None = "ModelMesh", **meta: Any
) -> dict[str, Any]:
    annotations = {} if mode is None else {"serving.kserve.io/deploymentMode": mode}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations, **meta},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
        "status": {"old": True},
    }


async def test_only_modelmesh_inference_services_of_served_namespaces_count() -> None:
    view = _view()
    assert view.seen(_isvc("a")) == ResourceKey("InferenceService", "mm", "a")
    assert view.seen(_isvc("kserve", mode="Serverless")) is None
    assert view.seen(_isvc("plain", mode=None)) is None
    view.seen(_isvc("elsewhere", namespace="other"))
    listed = await view.list()
    assert list(listed) == [ResourceKey("InferenceService", "mm", "a")]
    assert "status" not in listed[ResourceKey("InferenceService", "mm", "a")]
    statuses = await view.statuses()
    assert statuses == {ResourceKey("InferenceService", "mm", "a"): {"old": True}}
    # An annotation removed: no longer ours.
    view.seen(_isvc("a", mode=None))
    assert await view.list() == {}


async def test_first_seen_first_listed_and_deleting_ones_are_left_out() -> None:
    view = _view()
    view.seen(_isvc("second-name-first-seen"))
    view.seen(_isvc("a-later"))
    assert [key.name for key in await view.list()] == ["second-name-first-seen", "a-later"]
    assert set(view.without_finalizer()) == {
        ResourceKey("InferenceService", "mm", "second-name-first-seen"),
        ResourceKey("InferenceService", "mm", "a-later"),
    }
    view.seen(_isvc("a-later", deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[FINALIZER]))
    assert [key.name for key in await view.list()] == ["second-name-first-seen"]
    assert list(view.deleting()) == [ResourceKey("InferenceService", "mm", "a-later")]
    view.gone(ResourceKey("InferenceService", "mm", "a-later"))
    assert view.deleting() == {}


def test_which_namespaces_are_served() -> None:
    """Namespace-scoped: the operator's own; cluster-scoped: also those
    labelled modelmesh-enabled (against the emulator:
    tests/integration/test_operator_clusterwide.py)."""
    inputs = Inputs(enabled_namespaces={"team-a"})
    key = ResourceKey.named

    def served(k: ResourceKey, clusterwide: bool) -> bool:
        return serves(k, namespace="mm", clusterwide=clusterwide, inputs=inputs)

    assert served(key("InferenceService", "mm", "x"), False)
    assert not served(key("InferenceService", "team-a", "x"), False)
    assert served(key("InferenceService", "team-a", "x"), True)
    assert not served(key("InferenceService", "team-b", "x"), True)
    assert served(key("ClusterServingRuntime", "", "rt"), True)


async def test_the_emulator_serves_the_namespace_resource() -> None:
    """kmock 0.8 alone answers 500 to /api/v1/namespaces (see tests/_kube_emulator.py)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    async with (
        running_emulator() as emulator,
        KubeApi(KubeConnection(server=str(emulator.url)), timeout_s=5, user_agent="t") as api,
    ):
        assert await api.list(NAMESPACES, namespace=None) == []
        assert await api.create(ref_of(namespace), namespace) is not None
        await api.patch(ref_of(namespace), {"metadata": {"labels": {"modelmesh-enabled": "true"}}})
        found = await api.get(Ref(NAMESPACES, None, "team-a"))
        assert found is not None and found["metadata"]["labels"] == {"modelmesh-enabled": "true"}
        # Namespaced paths are parsed as before.
        assert await api.list(INFERENCE_SERVICES, namespace="team-a") == []
        (listed,) = await api.list(NAMESPACES, namespace=None)
        assert listed["metadata"]["name"] == "team-a"
        plurals = {request.resource.plural for request in emulator if request.resource}
        assert plurals == {"namespaces", "inferenceservices"}


async def test_resources_of_a_namespace_no_longer_served_are_let_go() -> None:
    """Unlabelled: what holds our finalizer is handed back (the finalizer
    off, the object kept in the view); labelled again, it is taken up."""
    served = {"mm", "team-a"}
    held = _isvc("x", namespace="team-a", finalizers=[FINALIZER, "other/keep"])
    key = ResourceKey("InferenceService", "team-a", "x")
    async with (
        running_emulator() as emulator,
        KubeApi(KubeConnection(server=str(emulator.url)), timeout_s=5, user_agent="t") as api,
    ):
        await api.create(ref_of(held), held)
        view = ClusterResources(
            api, admit=lambda resource: None, serves=lambda k: k.namespace in served
        )
        view.seen(held)
        assert view.held_unserved() == {}
        served.discard("team-a")
        assert list(view.held_unserved()) == [key]
        await view.remove_finalizer(key, deleting=False)
        found = await api.get(ref_of(held))
        assert found is not None and found["metadata"]["finalizers"] == ["other/keep"]
        assert view.held_unserved() == {}
        served.add("team-a")
        assert list(view.without_finalizer()) == [key]


def test_runtime_namespaces_include_those_no_longer_served() -> None:
    """Where runtime Deployments may be, to prune them once a namespace is unlabelled."""
    view = _view()

    def runtime(namespace: str) -> dict[str, Any]:
        return {"kind": "ServingRuntime", "metadata": {"name": "rt", "namespace": namespace}}

    view.seen(runtime("mm"))
    view.seen(runtime("unlabelled"))
    view.seen(_isvc("x", namespace="elsewhere"))
    assert view.runtime_namespaces() == {"mm", "unlabelled"}
    assert view.runtime_document("rt", namespace="unlabelled") is None  # not served
