"""The controller's reconcile pass against a fake mesh (a MeshPort) over a
real sqlite resource store, with a manual clock: no processes.

The fake keeps vmodels and models as the mesh does (a vmodel moves to its
target once the target is loaded; auto-delete models go when no vmodel uses
them), and the tests script the loads."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from meshserve import errors
from meshserve._clock import ManualClock
from meshserve.controller import (
    BUILTIN_RUNTIME,
    CLUSTER,
    Controller,
    MeshPort,
    PoolSpec,
    ResourceKey,
    ResourceStore,
)
from meshserve.mesh import CopyInfo, ModelState, ModelStatus, VModelState, VModelStatus
from meshserve.settings import ControlSettings, StorageSettings
from meshserve.storage import LocalRoots
from meshserve.store import SqliteStore

START = 1_700_000_000.0
START_TEXT = "2023-11-14T22:13:20Z"
GRPC = "127.0.0.1:8033"
REST = "http://127.0.0.1:8008"


@dataclasses.dataclass
class _Model:
    model_type: str
    path: str
    key: str
    auto_delete: bool
    state: ModelState = ModelState.NOT_LOADED
    errors: tuple[str, ...] = ()
    copies: tuple[CopyInfo, ...] = ()


@dataclasses.dataclass
class _VModel:
    active: str
    target: str
    owner: str


class FakeMesh:
    """A MeshPort with the mesh's vmodel rules; loads are scripted."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock
        self.models: dict[str, _Model] = {}
        self.vmodels: dict[str, _VModel] = {}
        self.placeable = True
        self.ensured: list[str] = []
        self.deleted: list[tuple[str, str]] = []
        self.set_calls: list[str] = []
        self.set_errors: dict[str, Exception] = {}
        """What set_vmodel raises for a vmodel (a scripted failure)."""

    # -- the port ----------------------------------------------------------

    def vmodel_status(self, vmodel_id: str) -> VModelStatus:
        vmodel = self.vmodels.get(vmodel_id)
        if vmodel is None:
            return VModelStatus(VModelState.NOT_FOUND)
        active = self.model_status(vmodel.active)
        if vmodel.active == vmodel.target:
            return VModelStatus(
                VModelState.DEFINED, vmodel.active, vmodel.target, active, None, vmodel.owner
            )
        target = self.model_status(vmodel.target)
        state = (
            VModelState.TRANSITION_FAILED
            if target.state is ModelState.LOADING_FAILED
            else VModelState.TRANSITIONING
        )
        return VModelStatus(state, vmodel.active, vmodel.target, active, target, vmodel.owner)

    async def set_vmodel(
        self,
        vmodel_id: str,
        *,
        target_model_id: str,
        owner: str,
        model_type: str,
        model_path: str,
        model_key: str,
        auto_delete_target: bool,
        load_now: bool,
    ) -> VModelStatus:
        self.set_calls.append(vmodel_id)
        if vmodel_id in self.set_errors:
            raise self.set_errors[vmodel_id]
        vmodel = self.vmodels.get(vmodel_id)
        if vmodel is not None and vmodel.owner != owner:
            # As VModelTable.set: another owner's vmodel is not touched.
            raise errors.AlreadyExistsError(
                f"vmodel '{vmodel_id}' exists with owner '{vmodel.owner}', not '{owner}'"
            )
        model = self.models.setdefault(
            target_model_id, _Model(model_type, model_path, model_key, auto_delete_target)
        )
        if load_now and model.state is ModelState.NOT_LOADED:
            model.state = ModelState.LOADING
        if vmodel is None:
            self.vmodels[vmodel_id] = _VModel(target_model_id, target_model_id, owner)
        else:
            vmodel.target = target_model_id
        return self.vmodel_status(vmodel_id)

    async def delete_vmodel(self, vmodel_id: str, *, owner: str) -> None:
        self.deleted.append((vmodel_id, owner))
        vmodel = self.vmodels.pop(vmodel_id, None)
        if vmodel is not None:
            self._collect(vmodel.active)
            self._collect(vmodel.target)

    def model_status(self, model_id: str) -> ModelStatus:
        model = self.models.get(model_id)
        if model is None:
            return ModelStatus(ModelState.NOT_FOUND)
        return ModelStatus(model.state, model.errors, model.copies)

    def can_place(self, model_id: str) -> bool:
        return self.placeable

    async def ensure_available(self, model_id: str, *, sync: bool) -> None:
        self.ensured.append(model_id)
        self.models[model_id].state = ModelState.LOADING

    # -- scripting -----------------------------------------------------------

    def loaded(self, model_id: str, *, location: str = "instance-a") -> None:
        """The model loaded; vmodels moving to it switch over."""
        model = self.models[model_id]
        model.state = ModelState.LOADED
        model.copies = (CopyInfo(location, ModelState.LOADED, self._now_ms()),)
        for vmodel in self.vmodels.values():
            if vmodel.target == model_id and vmodel.active != model_id:
                previous, vmodel.active = vmodel.active, model_id
                self._collect(previous)

    def failed(self, model_id: str, error: str, *, location: str = "instance-a") -> None:
        model = self.models[model_id]
        model.state = ModelState.LOADING_FAILED
        model.errors = (error,)
        model.copies = (CopyInfo(location, ModelState.LOADING_FAILED, self._now_ms()),)

    def _collect(self, model_id: str) -> None:
        model = self.models.get(model_id)
        used = any(model_id in (v.active, v.target) for v in self.vmodels.values())
        if model is not None and model.auto_delete and not used:
            del self.models[model_id]

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)


class FakePools:
    """RuntimePools that records what the controller asks to run."""

    def __init__(self) -> None:
        self.synced: dict[str, PoolSpec] = {}
        self.problems: dict[str, str] = {}

    async def sync(self, pools: Mapping[str, PoolSpec]) -> None:
        self.synced = dict(pools)

    def problem(self, name: str) -> str | None:
        return self.problems.get(name)

    async def close(self) -> None:
        self.synced = {}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_time=START)


@pytest.fixture
def mesh(clock: ManualClock) -> FakeMesh:
    return FakeMesh(clock)


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore.open(tmp_path / "store.db") as opened:
        yield opened


@pytest.fixture
def resources(store: SqliteStore) -> ResourceStore:
    return ResourceStore(store)


def _controller(
    store: SqliteStore,
    mesh: MeshPort,
    clock: ManualClock,
    *,
    control: ControlSettings | None = None,
    pools: FakePools | None = None,
    namespace_grpc_urls: dict[str, str] | None = None,
) -> Controller:
    return Controller(
        store=store,
        mesh=mesh,
        candidate_id="instance-a",
        lease_ttl_s=10.0,
        grpc_url=GRPC,
        rest_url=REST,
        namespace_grpc_urls=namespace_grpc_urls,
        control=control,
        pools=pools,
        clock=clock,
    )


@pytest.fixture
def controller(store: SqliteStore, mesh: FakeMesh, clock: ManualClock) -> Controller:
    return _controller(store, mesh, clock)


def _isvc(
    name: str,
    *,
    uri: str = "pvc://models/iris.skops",
    model_format: str = "sklearn",
    runtime: str | None = None,
    namespace: str = "default",
    modelmesh: bool = True,
) -> dict[str, Any]:
    model: dict[str, Any] = {"modelFormat": {"name": model_format}, "storageUri": uri}
    if runtime is not None:
        model["runtime"] = runtime
    annotations = {"serving.kserve.io/deploymentMode": "ModelMesh"} if modelmesh else {}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"predictor": {"model": model}},
    }


def _predictor(name: str, *, path: str = "iris.skops") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "Predictor",
        "metadata": {"name": name},
        "spec": {"modelType": {"name": "sklearn"}, "path": path, "storage": {"key": "local"}},
    }


def _runtime(
    name: str,
    *,
    command: str | None = "/opt/rt/serve",
    image: str | None = None,
    model_format: str = "tensorflow",
    adapter: str | None = None,
) -> dict[str, Any]:
    """A ServingRuntime auto-selecting ``model_format``, run from ``command``
    or only an ``image`` (with a ``builtInAdapter`` of type ``adapter``)."""
    container: dict[str, Any] = {"name": adapter or "rt"}
    if command is not None:
        container["command"] = [command]
    if image is not None:
        container["image"] = image
    spec: dict[str, Any] = {
        "multiModel": True,
        "supportedModelFormats": [{"name": model_format, "autoSelect": True}],
        "containers": [container],
    }
    if adapter is not None:
        spec["builtInAdapter"] = {"serverType": adapter}
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name},
        "spec": spec,
    }


def _key(kind: str, name: str, namespace: str = "default") -> ResourceKey:
    return ResourceKey.named(kind, namespace, name)


async def _status(resources: ResourceStore, key: ResourceKey) -> dict[str, Any]:
    status = await resources.status(key)
    assert status is not None, f"no status for {key.path()}"
    return status


def _failure(status: dict[str, Any]) -> dict[str, Any]:
    """A status's lastFailureInfo ({} when none), in either kind's shape."""
    failure: dict[str, Any] = (
        status.get("lastFailureInfo") or status.get("modelStatus", {}).get("lastFailureInfo") or {}
    )
    return failure


def _active(status: dict[str, Any]) -> str | None:
    """A status's active model state, in either kind's shape."""
    states = status.get("modelStatus", {}).get("states", {})
    state: str | None = states.get("activeModelState", status.get("activeModelState"))
    return state


def _transition(status: dict[str, Any]) -> str | None:
    """A status's transition status, in either kind's shape."""
    value: str | None = status.get("modelStatus", {}).get(
        "transitionStatus", status.get("transitionStatus")
    )
    return value


def _ready(status: dict[str, Any]) -> str:
    """The status of the Ready condition (kubectl's printer column)."""
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    return str(ready["status"])


async def _applied(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore, document: dict[str, Any]
) -> str:
    """Apply ``document`` and reconcile once: the model its vmodel targets."""
    await resources.apply(document)
    await controller.reconcile()
    key = ResourceKey.of(document)
    vmodel_id = key.name if key.namespace == "default" else f"{key.namespace}/{key.name}"
    return mesh.vmodels[vmodel_id].target


async def _served(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore, document: dict[str, Any]
) -> str:
    """:func:`_applied`, then its model loads and the status says so."""
    model_id = await _applied(controller, mesh, resources, document)
    mesh.loaded(model_id)
    await controller.reconcile()
    return model_id


async def test_an_inference_service_becomes_a_vmodel_and_reports_loaded(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    await resources.apply(_isvc("iris"))
    await controller.reconcile()

    (model_id,) = mesh.models
    assert model_id.startswith("iris__isvc-")
    assert mesh.vmodels["iris"] == _VModel(active=model_id, target=model_id, owner="isvc")
    model = mesh.models[model_id]
    assert (model.model_type, model.path, model.auto_delete) == ("mt:sklearn", "iris.skops", True)
    assert json.loads(model.key)["model_type"] == {"name": "sklearn"}
    loading = await _status(resources, _key("InferenceService", "iris"))
    assert loading["modelStatus"]["states"]["activeModelState"] == "Loading"
    assert _ready(loading) == "Unknown"

    mesh.loaded(model_id)
    clock.advance(5)
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    # The whole document, key order included: `get -o yaml` prints it as is.
    ready_at = "2023-11-14T22:13:25Z"
    assert status == {
        "observedGeneration": 1,
        "conditions": [
            {"type": "PredictorReady", "status": "True", "lastTransitionTime": ready_at},
            {"type": "Ready", "status": "True", "lastTransitionTime": ready_at},
        ],
        "url": f"grpc://{GRPC}",
        "address": {"url": f"grpc://{GRPC}"},
        "components": {
            "predictor": {
                "grpcUrl": f"grpc://{GRPC}",
                "restUrl": f"{REST}/v2/models/iris",
                "url": f"grpc://{GRPC}",
            }
        },
        "modelStatus": {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded"},
            "copies": {"failedCopies": 0, "totalCopies": 1},
        },
    }
    assert list(status) == [
        "observedGeneration",
        "conditions",
        "url",
        "address",
        "components",
        "modelStatus",
    ]


async def test_a_changed_spec_is_a_new_target_the_vmodel_moves_to_once_loaded(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    key = _key("InferenceService", "iris")
    first = await _served(controller, mesh, resources, _isvc("iris"))

    second = await _applied(controller, mesh, resources, _isvc("iris", uri="pvc://models/v2.skops"))
    assert second != first and second.startswith("iris__isvc-")
    moving = await _status(resources, key)
    assert moving["observedGeneration"] == 2
    assert moving["modelStatus"]["transitionStatus"] == "InProgress"
    assert moving["modelStatus"]["states"] == {
        "activeModelState": "Loaded",
        "targetModelState": "Loading",
    }
    assert _ready(moving) == "True", "the old model serves while the new one loads"
    assert mesh.vmodels["iris"].target == second

    mesh.loaded(second)
    await controller.reconcile()
    done = await _status(resources, key)
    assert done["modelStatus"]["transitionStatus"] == "UpToDate"
    assert done["modelStatus"]["states"] == {"activeModelState": "Loaded"}
    assert mesh.vmodels["iris"].active == second
    assert first not in mesh.models, "the old auto-delete model went"


async def test_an_unchanged_spec_sets_nothing_again(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    model_id = await _served(controller, mesh, resources, _isvc("iris"))
    await resources.apply(_isvc("iris"))  # the same spec: generation stays 1
    await controller.reconcile()
    assert list(mesh.models) == [model_id]
    assert (await _status(resources, _key("InferenceService", "iris")))["observedGeneration"] == 1


async def test_a_model_waiting_for_a_placeable_instance_is_loaded_once_one_can_take_it(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    model_id = await _applied(controller, mesh, resources, _isvc("iris"))
    mesh.models[model_id].state = ModelState.NOT_LOADED  # nowhere could take it
    mesh.placeable = False
    await controller.reconcile()
    assert mesh.ensured == []
    waiting = await _status(resources, _key("InferenceService", "iris"))
    assert waiting["modelStatus"]["states"]["activeModelState"] == "Standby"

    mesh.placeable = True
    await controller.reconcile()
    assert mesh.ensured == [model_id]


async def test_deleting_the_resource_deletes_its_vmodel_and_status(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    key = _key("InferenceService", "iris")
    model_id = await _served(controller, mesh, resources, _isvc("iris"))

    assert await resources.delete(key)
    await controller.reconcile()
    assert mesh.deleted == [("iris", "isvc")]
    assert "iris" not in mesh.vmodels
    assert mesh.model_status(model_id).state is ModelState.NOT_FOUND
    assert await resources.status(key) is None


async def test_a_load_failure_is_failed_to_load_with_the_last_failure(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    model_id = await _applied(controller, mesh, resources, _isvc("iris"))
    mesh.failed(model_id, "iris.skops: not a skops file", location="instance-b")
    clock.advance(30)
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    model_status = status["modelStatus"]
    assert model_status["states"]["activeModelState"] == "FailedToLoad"
    assert _ready(status) == "False"
    assert model_status["copies"]["failedCopies"] == 1
    # The copy's failure time, not the pass's (30 s later).
    assert list(model_status["lastFailureInfo"].items()) == [
        ("location", "instance-b"),
        ("reason", "ModelLoadFailed"),
        ("message", "iris.skops: not a skops file"),
        ("modelRevisionName", model_id),
        ("time", START_TEXT),
    ]
    assert list(model_status) == ["transitionStatus", "states", "lastFailureInfo", "copies"]


async def test_a_failed_new_target_blocks_the_transition_and_names_the_target(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await _served(controller, mesh, resources, _isvc("iris"))
    broken = _isvc("iris", uri="pvc://models/broken.skops")
    second = await _applied(controller, mesh, resources, broken)
    mesh.failed(second, "broken")
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert status["modelStatus"]["states"] == {
        "activeModelState": "Loaded",
        "targetModelState": "FailedToLoad",
    }
    assert _ready(status) == "True"
    assert status["modelStatus"]["lastFailureInfo"]["modelRevisionName"] == second


async def test_a_failure_message_is_shown_with_uris_redacted(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    model_id = await _applied(controller, mesh, resources, _isvc("iris"))
    mesh.failed(model_id, "cannot pull https://host/m.onnx?X-Amz-Signature=abc123secret")
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    assert "abc123secret" not in status["modelStatus"]["lastFailureInfo"]["message"]
    assert "abc123secret" not in json.dumps(status["conditions"])


async def test_an_unknown_runtime_name_is_not_recognized(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await resources.apply(_isvc("iris", runtime="no-such-runtime"))
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    # Refused before the mesh: no URLs.
    assert list(status) == ["observedGeneration", "conditions", "modelStatus"]
    model_status = status["modelStatus"]
    assert model_status["states"] == {"activeModelState": "FailedToLoad"}
    assert _transition(model_status) == "BlockedByFailedLoad"
    failure = model_status["lastFailureInfo"]
    assert list(failure) == ["reason", "message", "modelRevisionName", "time"]
    assert failure["reason"] == "RuntimeNotRecognized"
    assert failure["modelRevisionName"].startswith("iris__isvc-")
    assert failure["time"] == START_TEXT
    assert "no-such-runtime" in failure["message"]
    assert mesh.vmodels == {}


async def test_a_format_no_runtime_supports_has_no_supporting_runtime(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await resources.apply(_isvc("tf", model_format="tensorflow"))
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "tf"))
    assert status["modelStatus"]["lastFailureInfo"]["reason"] == "NoSupportingRuntime"
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert mesh.vmodels == {}


async def test_a_pickle_runtime_outside_the_allowed_namespaces_is_not_recognized(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    control = ControlSettings(pickle_namespaces=("trusted",))
    controller = _controller(store, mesh, clock, control=control)
    await resources.apply(_isvc("pickled", runtime="meshserve-pickle", namespace="team-a"))
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "pickled", "team-a"))
    failure = status["modelStatus"]["lastFailureInfo"]
    assert failure["reason"] == "RuntimeNotRecognized"
    assert "control.pickleNamespaces (trusted)" in failure["message"]
    assert failure["modelRevisionName"].startswith("team-a/pickled__isvc-")


async def test_an_invalid_spec_is_invalid_spec(
    controller: Controller, resources: ResourceStore
) -> None:
    document = _isvc("iris")
    document["spec"]["predictor"]["model"]["storageUri"] = "nfs://server/model"
    await resources.apply(document)
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    assert status["modelStatus"]["transitionStatus"] == "InvalidSpec"
    failure = status["modelStatus"]["lastFailureInfo"]
    assert failure["reason"] == "InvalidPredictorSpec"
    assert failure["time"] == START_TEXT
    first_revision = failure["modelRevisionName"]
    assert first_revision.startswith("iris__isvc-")

    # Another invalid spec is another revision.
    document["spec"]["predictor"]["model"]["storageUri"] = "nfs://server/other"
    await resources.apply(document)
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris"))
    revision = status["modelStatus"]["lastFailureInfo"]["modelRevisionName"]
    assert revision.startswith("iris__isvc-") and revision != first_revision


async def test_a_resource_for_another_controller_is_skipped(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await resources.apply(_isvc("serverless", modelmesh=False))
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "serverless"))
    assert list(status) == ["skipped", "message", "observedGeneration"]
    assert status["skipped"] is True
    assert mesh.vmodels == {}


async def test_ids_outside_the_default_namespace_carry_it(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await resources.apply(_isvc("iris", namespace="team-a"))
    await controller.reconcile()
    assert list(mesh.vmodels) == ["team-a/iris"]
    (model_id,) = mesh.models
    assert model_id.startswith("team-a/iris__isvc-")
    mesh.loaded(model_id)
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "iris", "team-a"))
    predictor = status["components"]["predictor"]
    # The plain name under the namespace's prefix: what the REST front
    # serves to a client of team-a (the ids stay namespaced).
    assert predictor["restUrl"] == f"{REST}/namespaces/team-a/v2/models/iris"


async def test_a_namespace_with_a_port_of_its_own_gets_it_as_grpc_url(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    # server.namespacePorts: a client taking grpcUrl verbatim reaches the
    # namespace's port, where the plain name means the namespace's model.
    controller = _controller(store, mesh, clock, namespace_grpc_urls={"team-a": "127.0.0.1:9001"})
    await resources.apply(_isvc("iris", namespace="team-a"))
    await resources.apply(_isvc("iris", namespace="team-b"))
    await controller.reconcile()
    for model_id in list(mesh.models):
        mesh.loaded(model_id)
    await controller.reconcile()
    team_a = await _status(resources, _key("InferenceService", "iris", "team-a"))
    team_b = await _status(resources, _key("InferenceService", "iris", "team-b"))
    for status, url in ((team_a, "grpc://127.0.0.1:9001"), (team_b, f"grpc://{GRPC}")):
        assert status["url"] == status["address"]["url"] == url
        assert status["components"]["predictor"]["grpcUrl"] == url
        assert status["components"]["predictor"]["url"] == url


async def test_runtime_verdicts_and_pool_sizes_follow_use_and_the_grace_period(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    control = ControlSettings(
        allowed_runtime_images=("/opt/rt/*",),
        scale_to_zero_enabled=True,
        scale_to_zero_grace_period_s=60,
    )
    pools = FakePools()
    controller = _controller(store, mesh, clock, control=control, pools=pools)
    await resources.apply(_runtime("tf-rt"))
    await resources.apply(_runtime("refused-rt", command="/usr/bin/evil", model_format="keras"))
    await resources.apply(_isvc("tf", model_format="tensorflow"))
    await controller.reconcile()

    assert await _status(resources, _key("ServingRuntime", "tf-rt")) == {
        "accepted": True,
        "message": "",
        "replicas": 2,  # control.podsPerRuntime
    }
    refused = await _status(resources, _key("ServingRuntime", "refused-rt"))
    assert list(refused) == ["accepted", "message"]
    assert refused["accepted"] is False
    assert "/usr/bin/evil" in refused["message"]
    assert pools.synced["tf-rt"].replicas == 2
    assert mesh.vmodels["tf"].owner == "isvc"

    await resources.delete(_key("InferenceService", "tf"))
    clock.advance(59)
    await controller.reconcile()
    assert pools.synced["tf-rt"].replicas == 2, "kept through the grace period"
    clock.advance(1)
    await controller.reconcile()
    assert pools.synced["tf-rt"].replicas == 0
    assert (await _status(resources, _key("ServingRuntime", "tf-rt")))["replicas"] == 0


async def test_an_unhealthy_runtime_pool_is_named_while_nothing_serves(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    pools = FakePools()
    pools.problems["meshserve-pickle"] = "exited with status 1"
    controller = _controller(store, mesh, clock, pools=pools)
    await resources.apply(_isvc("pickled", runtime="meshserve-pickle"))
    await controller.reconcile()
    status = await _status(resources, _key("InferenceService", "pickled"))
    failure = status["modelStatus"]["lastFailureInfo"]
    assert failure == {
        "reason": "RuntimeUnhealthy",
        "message": "runtime meshserve-pickle: exited with status 1",
        "modelRevisionName": mesh.vmodels["pickled"].target,
        "time": START_TEXT,
    }
    shipped = ResourceKey.named("ClusterServingRuntime", CLUSTER, "meshserve-pickle")
    assert await resources.status(shipped) is None, "shipped runtimes get no verdict"


# -- one bad resource never blocks the others ---------------------------------


async def test_a_predictor_and_an_inference_service_of_one_name_do_not_block_the_rest(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    # Both want vmodel "iris" (with different owners); the Predictor comes
    # after the InferenceService, and "zz-other" after both in the pass.
    await resources.apply(_isvc("iris"))
    await resources.apply(_predictor("iris"))
    await resources.apply(_predictor("zz-other", path="other.skops"))
    await controller.reconcile()

    assert mesh.vmodels["iris"].owner == "isvc", "the first keeps the vmodel"
    assert [m for m in mesh.models if m.startswith("iris__ksp-")] == []
    assert mesh.vmodels["zz-other"].owner == "ksp", "the one after the conflict is reconciled"
    other = await _status(resources, _key("Predictor", "zz-other"))
    assert _active(other) == "Loading"
    assert _active(await _status(resources, _key("InferenceService", "iris"))) == "Loading"
    refused = await _status(resources, _key("Predictor", "iris"))
    assert _transition(refused) == "InvalidSpec"
    assert _active(refused) == "FailedToLoad"
    assert _failure(refused)["reason"] == "InvalidPredictorSpec"
    assert _failure(refused)["message"].startswith(
        "an InferenceService named iris already owns vmodel iris in namespace default"
    )

    mesh.loaded(mesh.vmodels["zz-other"].target)
    await controller.reconcile()
    other = await _status(resources, _key("Predictor", "zz-other"))
    assert other["available"] is True


async def test_the_first_come_keeps_the_vmodel_until_it_is_deleted(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    # Applied in one go, the Predictor first (though the InferenceService
    # comes first in key order): the Predictor keeps the name.
    await resources.apply(_predictor("iris"))
    await resources.apply(_isvc("iris"))
    await controller.reconcile()
    assert mesh.vmodels["iris"].owner == "ksp"
    await controller.reconcile()
    assert mesh.vmodels["iris"].owner == "ksp"
    refused = await _status(resources, _key("InferenceService", "iris"))
    assert _failure(refused)["message"].startswith(
        "a Predictor named iris already owns vmodel iris in namespace default"
    )

    # Deleting the holder frees the name: the other takes it in that very
    # pass, backoff or not.
    await resources.delete(_key("Predictor", "iris"))
    await controller.reconcile()
    assert mesh.vmodels["iris"].owner == "isvc"
    taken = await _status(resources, _key("InferenceService", "iris"))
    assert _failure(taken) == {}
    assert _active(taken) == "Loading"


async def test_a_vmodel_of_a_management_client_is_named_as_such(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await mesh.set_vmodel(
        "iris",
        target_model_id="by-hand",
        owner="",
        model_type="mt:sklearn",
        model_path="x",
        model_key="{}",
        auto_delete_target=False,
        load_now=False,
    )
    await resources.apply(_isvc("iris", namespace="default"))
    await controller.reconcile()
    message = _failure(await _status(resources, _key("InferenceService", "iris")))["message"]
    assert "vmodel iris in namespace default already exists with owner ''" in message
    assert mesh.vmodels["iris"].target == "by-hand"


def _backoff_control() -> ControlSettings:
    return ControlSettings(reconcile_backoff_initial_s=1.0, reconcile_backoff_max_s=4.0)


async def test_a_failing_resource_backs_off_and_a_change_tries_it_at_once(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    controller = _controller(store, mesh, clock, control=_backoff_control())
    mesh.set_errors["iris"] = errors.UnavailableError("the registry is unreachable")
    await resources.apply(_isvc("iris"))
    await controller.reconcile()
    assert mesh.set_calls == ["iris"]
    status = await _status(resources, _key("InferenceService", "iris"))
    assert _failure(status)["reason"] == "ModelLoadFailed"
    assert "the registry is unreachable" in _failure(status)["message"]

    # Tries at 1, 1+2, 1+2+4 and then every 4 s (the maximum); the passes
    # in between leave it alone.
    tries_at: list[int] = []
    for second in range(1, 16):
        clock.advance(1)
        before = len(mesh.set_calls)
        await controller.reconcile()
        if len(mesh.set_calls) > before:
            tries_at.append(second)
    assert tries_at == [1, 3, 7, 11, 15]
    assert (await _status(resources, _key("InferenceService", "iris"))) == status

    # A changed resource is tried at once, and its backoff starts again.
    await resources.apply(_isvc("iris", uri="pvc://models/v2.skops"))
    await controller.reconcile()
    assert len(mesh.set_calls) == 7
    assert (await _status(resources, _key("InferenceService", "iris")))["observedGeneration"] == 2
    del mesh.set_errors["iris"]
    clock.advance(1)  # the initial delay again, not the maximum
    await controller.reconcile()
    assert mesh.vmodels["iris"].owner == "isvc"
    assert _failure(await _status(resources, _key("InferenceService", "iris"))) == {}


async def test_an_unexpected_error_is_the_resource_s_alone_with_one_traceback(
    controller: Controller,
    mesh: FakeMesh,
    resources: ResourceStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mesh.set_errors["iris"] = RuntimeError("a bug")
    await resources.apply(_isvc("iris"))
    await resources.apply(_isvc("other"))
    for _ in range(5):
        await controller.reconcile()
        clock.advance(120)
    assert "other" in mesh.vmodels
    status = await _status(resources, _key("InferenceService", "iris"))
    assert "internal error (RuntimeError)" in _failure(status)["message"]
    tracebacks = [
        r for r in caplog.records if r.exc_info and "InferenceService/default/iris" in r.message
    ]
    assert len(tracebacks) == 1


async def test_a_refused_resource_is_logged_once_per_change(
    controller: Controller,
    mesh: FakeMesh,
    resources: ResourceStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def lines() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "Predictor/default/iris" in r.getMessage()
        ]

    await resources.apply(_isvc("iris"))
    await resources.apply(_predictor("iris"))
    for _ in range(5):
        await controller.reconcile()
        clock.advance(120)  # past any backoff: each pass tries it again
    assert len(lines()) == 1
    assert "already owns vmodel iris" in lines()[0]

    invalid = _predictor("iris")
    invalid["spec"]["modelType"] = {"name": ""}
    await resources.apply(invalid)
    for _ in range(3):
        await controller.reconcile()
    assert len(lines()) == 2, "what is wrong changed: one more line"


# -- runtimes that cannot run here ----------------------------------------------

_ALLOW_ALL = ControlSettings(allowed_runtime_images=("*",))


@pytest.mark.parametrize(
    ("runtime", "why"),
    [
        (
            _runtime(
                "image-rt",
                command=None,
                image="kserve/sklearnserver:latest",
                model_format="sklearn",
            ),
            "exactly one container with a command",
        ),
        (
            _runtime(
                "triton-rt",
                command=None,
                image="nvcr.io/triton:23",
                adapter="triton",
                model_format="sklearn",
            ),
            "builtInAdapter serverType 'triton' cannot run on this machine",
        ),
    ],
    ids=["image-only", "triton-adapter"],
)
async def test_a_named_runtime_that_cannot_run_here_says_why_and_serves_nothing(
    store: SqliteStore,
    mesh: FakeMesh,
    resources: ResourceStore,
    clock: ManualClock,
    runtime: dict[str, Any],
    why: str,
) -> None:
    pools = FakePools()
    controller = _controller(store, mesh, clock, control=_ALLOW_ALL, pools=pools)
    name = runtime["metadata"]["name"]
    await resources.apply(runtime)
    await resources.apply(_isvc("iris", runtime=name))
    await controller.reconcile()

    status = await _status(resources, _key("InferenceService", "iris"))
    assert _failure(status)["reason"] == "RuntimeUnhealthy"
    assert _failure(status)["message"].startswith(f"runtime {name} cannot run here: ")
    assert why in _failure(status)["message"]
    assert mesh.vmodels == {} and mesh.models == {}, "never loaded on another runtime"
    assert name not in pools.synced
    verdict = await _status(resources, _key("ServingRuntime", name))
    assert verdict["message"].startswith("cannot run here: ")


async def test_a_named_runtime_the_allowlist_refuses_cannot_run_here_not_unrecognized(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await resources.apply(_runtime("sk-rt", model_format="sklearn", command="/usr/bin/evil"))
    await resources.apply(_isvc("iris", runtime="sk-rt"))
    await controller.reconcile()
    failure = _failure(await _status(resources, _key("InferenceService", "iris")))
    assert failure["reason"] == "RuntimeUnhealthy"
    assert failure["message"].startswith("runtime sk-rt cannot run here: container 'rt' command")
    assert "control.allowedRuntimeImages" in failure["message"]
    assert mesh.models == {}


async def test_a_named_runtime_that_cannot_be_read_cannot_run_here(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    broken = _runtime("broken-rt", model_format="sklearn")
    broken["spec"]["containers"] = "not a list"
    await resources.apply(broken)
    await resources.apply(_isvc("iris", runtime="broken-rt"))
    await controller.reconcile()
    failure = _failure(await _status(resources, _key("InferenceService", "iris")))
    assert failure["reason"] == "RuntimeUnhealthy"
    assert failure["message"].startswith("runtime broken-rt cannot run here: ")
    assert mesh.models == {}


async def test_an_auto_selected_runtime_that_cannot_run_here_is_not_replaced(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    # A namespace runtime auto-selecting onnx ranks before the shipped
    # meshserve-builtin, which could serve onnx: the model is refused, not
    # sent to meshserve-builtin behind the user's back.
    pools = FakePools()
    controller = _controller(store, mesh, clock, control=_ALLOW_ALL, pools=pools)
    document = _runtime(
        "triton-2.x", command=None, image="nvcr.io/triton:23", adapter="triton", model_format="onnx"
    )
    await resources.apply(document)
    await resources.apply(_isvc("mnist", model_format="onnx", uri="pvc://models/mnist.onnx"))
    await controller.reconcile()
    failure = _failure(await _status(resources, _key("InferenceService", "mnist")))
    assert failure["reason"] == "RuntimeUnhealthy"
    assert failure["message"].startswith("runtime triton-2.x cannot run here: ")
    assert "auto-selected for model format 'onnx'" in failure["message"]
    assert "(meshserve-builtin)" in failure["message"], "names the runtime that could"
    assert mesh.models == {}


async def test_a_runtime_that_cannot_run_here_is_logged_once_per_change(
    store: SqliteStore,
    mesh: FakeMesh,
    resources: ResourceStore,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def lines() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "ServingRuntime/default/rt" in r.getMessage()
        ]

    controller = _controller(store, mesh, clock, pools=FakePools())
    await resources.apply(_runtime("rt", command=None, image="docker.io/someone/srv:1"))
    for _ in range(5):
        await controller.reconcile()
        clock.advance(1)
    assert len(lines()) == 1
    assert "cannot run here" in lines()[0] and "docker.io/someone/srv:1" in lines()[0]

    await resources.apply(_runtime("rt", command=None, image="docker.io/someone/srv:2"))
    for _ in range(3):
        await controller.reconcile()
    assert len(lines()) == 2


def _failure(status: dict[str, Any]) -> dict[str, Any]:
    """lastFailureInfo wherever the status shape keeps it."""
    found = status.get("lastFailureInfo") or status.get("modelStatus", {}).get("lastFailureInfo")
    return found or {}


async def test_a_local_path_outside_the_roots_is_refused_even_past_the_api(
    store: SqliteStore,
    mesh: FakeMesh,
    clock: ManualClock,
    resources: ResourceStore,
    tmp_path: pathlib.Path,
) -> None:
    controller = Controller(
        store=store,
        mesh=mesh,
        candidate_id="instance-a",
        lease_ttl_s=10.0,
        grpc_url=GRPC,
        rest_url=REST,
        clock=clock,
        local_roots=LocalRoots.for_resources(StorageSettings(pvc_root=tmp_path)),
    )
    document = _predictor("outside", path="/etc/passwd")
    del document["spec"]["storage"]
    await resources.apply(document)  # as `apply --store` writes it: no API check
    await controller.reconcile()
    failure = _failure(await _status(resources, _key("Predictor", "outside")))
    assert failure["reason"] == "InvalidPredictorSpec"
    assert "outside the allowed roots" in failure["message"]
    assert "outside" not in mesh.vmodels


async def test_a_predictor_reports_its_flat_v1alpha1_status(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    model_id = await _served(controller, mesh, resources, _predictor("iris"))
    assert model_id.startswith("iris__ksp-")
    status = await _status(resources, _key("Predictor", "iris"))
    assert status == {
        "observedGeneration": 1,
        "available": True,
        "transitionStatus": "UpToDate",
        "activeModelState": "Loaded",
        "targetModelState": "",
        "httpEndpoint": f"{REST}/v2/models/iris",
        "grpcEndpoint": f"grpc://{GRPC}",
        "totalCopies": 1,
        "failedCopies": 0,
    }


async def test_later_passes_keep_the_times_of_an_unchanged_status(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    await resources.apply(_isvc("tf", model_format="tensorflow"))
    await controller.reconcile()
    key = _key("InferenceService", "tf")
    first = await _status(resources, key)
    clock.advance(120)
    await controller.reconcile()
    assert await _status(resources, key) == first
    assert first["modelStatus"]["lastFailureInfo"]["time"] == START_TEXT
    assert {c["lastTransitionTime"] for c in first["conditions"]} == {START_TEXT}


async def test_release_removes_a_vmodel_applied_before_a_restart(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    """The operator holds a deleted resource by its finalizer; the
    controller that applied it is gone (restarted): release still finds
    its vmodel from the document, and leaves another owner's alone."""
    document = _isvc("iris")
    await _served(_controller(store, mesh, clock), mesh, resources, document)
    restarted = _controller(store, mesh, clock)

    await restarted.release(_key("InferenceService", "iris"), document)
    assert mesh.deleted == [("iris", "isvc")]
    assert "iris" not in mesh.vmodels
    # Nothing left: no effect; a spec that cannot be read made nothing.
    await restarted.release(_key("InferenceService", "iris"), document)
    await restarted.release(_key("InferenceService", "bad"), {"kind": "InferenceService"})


async def test_a_pool_spec_maker_decides_which_runtimes_can_run(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    """The operator's pools are Deployments: what it cannot run is its
    PoolSpecMaker's say (written to the runtime's status), not the local
    machine's, and no runtime is skipped."""
    control = ControlSettings(allowed_runtime_images=("/opt/rt/*",))
    pools = FakePools()

    def spec(runtime: Any, replicas: int) -> PoolSpec | str:
        if runtime.name == "tf-rt":
            return "tf-rt is not for this cluster"
        return PoolSpec(name=runtime.name, replicas=replicas, host="external")

    controller = Controller(
        store=store,
        mesh=mesh,
        candidate_id="operator",
        lease_ttl_s=10.0,
        grpc_url=GRPC,
        rest_url=REST,
        control=control,
        pools=pools,
        clock=clock,
        pool_spec=spec,
        skip_pools=(),
    )
    await resources.apply(_runtime("tf-rt"))
    await controller.reconcile()
    status = await _status(resources, _key("ServingRuntime", "tf-rt"))
    assert status["message"] == "cannot run here: tf-rt is not for this cluster"
    assert "tf-rt" not in pools.synced
    assert BUILTIN_RUNTIME in pools.synced, "not skipped: on a cluster it runs as pods too"


def _annotated(document: dict[str, Any], **annotations: str) -> dict[str, Any]:
    document["metadata"].setdefault("annotations", {}).update(
        {f"serving.meshserve.io/{name}": value for name, value in annotations.items()}
    )
    return document


async def test_batching_annotations_reach_the_model_key_the_resources_own_winning(
    store: SqliteStore, mesh: FakeMesh, resources: ResourceStore, clock: ManualClock
) -> None:
    controller = _controller(store, mesh, clock, control=_ALLOW_ALL)
    await resources.apply(_annotated(_runtime("tf"), maxBatchSize="8", maxBatchDelayMs="2"))
    plain = await _applied(controller, mesh, resources, _isvc("a", model_format="tensorflow"))
    own = await _applied(
        controller,
        mesh,
        resources,
        _annotated(_isvc("b", model_format="tensorflow"), maxBatchSize="1"),
    )
    assert json.loads(mesh.models[plain].key)["max_batch_size"] == 8
    key = json.loads(mesh.models[own].key)
    assert (key["max_batch_size"], key["max_batch_delay_ms"]) == (1, 2.0)


async def test_a_resource_without_batching_annotations_has_none_in_its_key(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    model_id = await _applied(controller, mesh, resources, _isvc("iris"))
    assert "max_batch_size" not in json.loads(mesh.models[model_id].key)


async def test_a_bad_batching_annotation_is_an_invalid_spec_naming_it(
    controller: Controller, mesh: FakeMesh, resources: ResourceStore
) -> None:
    await resources.apply(_annotated(_isvc("iris"), maxBatchSize="lots"))
    await controller.reconcile()
    failure = _failure(await _status(resources, _key("InferenceService", "iris")))
    assert failure["reason"] == "InvalidPredictorSpec"
    assert "serving.meshserve.io/maxBatchSize" in failure["message"]
    assert mesh.vmodels == {}
