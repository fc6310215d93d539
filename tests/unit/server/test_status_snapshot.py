"""The status snapshot: built from the mesh's records and the stored
InferenceServices, filtered to what the caller may see, limited in rows,
and read back by the CLI as it was written."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator

import pytest

from meshserve._ids import InstanceId, ModelId
from meshserve.controller import ResourceKey, ResourceStore
from meshserve.mesh import MeshRecords
from meshserve.protocol.status_snapshot import StatusSnapshot
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, ModelRecord
from meshserve.security import Principal, acting_as
from meshserve.server._status_snapshot import build_snapshot
from meshserve.store import SqliteStore

NOW_MS = 1_700_000_000_000


class _Source:
    """A StatusSource over fixed records."""

    def __init__(self, records: MeshRecords, instance_id: str = "i-1") -> None:
        self._records = records
        self._instance_id = instance_id

    @property
    def instance_id(self) -> str:
        return self._instance_id

    def mesh_records(self) -> MeshRecords:
        return self._records


def _model(name: str, *, last_used_ms: int = 0) -> ModelRecord:
    return ModelRecord(
        model_id=ModelId(name), type="sklearn", registered_ms=1, last_used_ms=last_used_ms
    )


def _copy(
    name: str, where: str, state: CopyState, *, time_ms: int = NOW_MS, error: str = ""
) -> CopyRecord:
    return CopyRecord(
        model_id=ModelId(name),
        instance_id=InstanceId(where),
        state=state,
        time_ms=time_ms,
        error=error,
        error_type="CorruptModelError" if error else "",
        size_bytes=1000 if state is CopyState.LOADED else 0,
    )


RECORDS = MeshRecords(
    instances=(
        InstanceRecord(
            instance_id=InstanceId("i-1"),
            address="127.0.0.1:1",
            capacity_bytes=10_000,
            used_bytes=2_000,
            model_count=2,
            lru_oldest_ms=NOW_MS - 60_000,
            rpm=30,
        ),
        InstanceRecord(instance_id=InstanceId("i-2"), address="127.0.0.1:2", shutting_down=True),
    ),
    models=(
        _model("cold"),
        _model("warm", last_used_ms=NOW_MS - 5_000),
        _model("busy", last_used_ms=NOW_MS - 50_000),
        _model("team-a/scoped", last_used_ms=NOW_MS - 1_000),
        _model("broken"),
    ),
    copies=(
        _copy("busy", "i-1", CopyState.LOADED),
        _copy("busy", "i-2", CopyState.LOADED),
        _copy("warm", "i-2", CopyState.LOADING, time_ms=NOW_MS - 3_000),
        _copy("broken", "i-1", CopyState.FAILED, time_ms=NOW_MS - 9_000, error="old failure"),
        _copy("broken", "i-2", CopyState.FAILED, time_ms=NOW_MS - 1_000, error="<b>new</b>"),
        _copy("team-a/scoped", "i-1", CopyState.FAILED, error="hidden from default readers"),
    ),
    rpm_here={"busy": 12},
)


@pytest.fixture
async def resources(tmp_path: pathlib.Path) -> AsyncIterator[ResourceStore]:
    async with SqliteStore.open(tmp_path / "store.db") as store:
        resources = ResourceStore(store)
        for namespace, name in (("default", "svc-a"), ("team-a", "svc-b")):
            document = {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
            }
            await resources.put(document)
        await resources.put_status(
            ResourceKey.named("InferenceService", "default", "svc-a"),
            {
                "conditions": [{"type": "Ready", "status": "False"}],
                "modelStatus": {
                    "transitionStatus": "BlockedByFailedLoad",
                    "states": {"activeModelState": "FailedToLoad", "targetModelState": ""},
                    "copies": {"totalCopies": 0, "failedCopies": 1},
                    "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "bad file"},
                },
            },
        )
        yield resources


async def _build(resources: ResourceStore, *, rows: int = 20) -> StatusSnapshot:
    return await build_snapshot(
        _Source(RECORDS), resources, rows=rows, refresh_s=5.0, now_ms=NOW_MS
    )


async def test_snapshot_of_the_mesh(resources: ResourceStore) -> None:
    snapshot = await _build(resources)
    assert snapshot.served_by == "i-1" and snapshot.time_ms == NOW_MS
    assert [(i.instance_id, i.here, i.shutting_down) for i in snapshot.instances] == [
        ("i-1", True, False),
        ("i-2", False, True),
    ]
    # Busiest here first, then by last use; copies and loads by instance.
    assert [m.model_id for m in snapshot.models] == [
        "busy",
        "team-a/scoped",
        "warm",
        "broken",
        "cold",
    ]
    busy, *_, warm, _, _ = snapshot.models
    assert (busy.copies, busy.size_bytes, busy.rpm_here) == (("i-1", "i-2"), 1000, 12)
    assert warm.loading_on == ("i-2",) and warm.copies == ()
    assert [(load.model_id, load.since_ms) for load in snapshot.loads] == [("warm", NOW_MS - 3_000)]
    # The most recent failure first, with its reason as given.
    assert [(f.model_id, f.instance_id, f.reason) for f in snapshot.failures][:2] == [
        ("team-a/scoped", "i-1", "hidden from default readers"),
        ("broken", "i-2", "<b>new</b>"),
    ]
    (svc_a, svc_b) = snapshot.services
    assert (svc_a.namespace, svc_a.name, svc_a.ready, svc_a.transition_status) == (
        "default",
        "svc-a",
        "False",
        "BlockedByFailedLoad",
    )
    assert (svc_a.failed_copies, svc_a.failure_reason, svc_a.failure_message) == (
        1,
        "ModelLoadFailed",
        "bad file",
    )
    assert (svc_b.namespace, svc_b.ready, svc_b.active_model_state) == ("team-a", "Unknown", "")


async def test_rows_bound_every_list_but_the_total_is_kept(resources: ResourceStore) -> None:
    snapshot = await _build(resources, rows=1)
    assert [m.model_id for m in snapshot.models] == ["busy"]
    assert snapshot.models_total == 5
    assert len(snapshot.failures) == 1


async def test_a_caller_sees_only_the_namespaces_and_models_it_may(
    resources: ResourceStore,
) -> None:
    reader = Principal(name="reader", role="viewer", namespaces=("default",))
    with acting_as(reader, method="GET /status.json"):
        snapshot = await _build(resources)
    shown = {m.model_id for m in snapshot.models} | {f.model_id for f in snapshot.failures}
    assert "team-a/scoped" not in shown and "busy" in shown
    assert [s.name for s in snapshot.services] == ["svc-a"]
    # Instances belong to no namespace: every reader sees them.
    assert len(snapshot.instances) == 2


async def test_json_round_trip_and_unknown_keys(resources: ResourceStore) -> None:
    snapshot = await _build(resources)
    assert StatusSnapshot.from_json(snapshot.to_json()) == snapshot
    raw = json.loads(snapshot.to_json())
    raw["from_a_newer_server"] = 1
    raw["models"][0]["also_new"] = [1, 2]
    assert StatusSnapshot.from_json(json.dumps(raw)) == snapshot


@pytest.mark.parametrize("payload", [b"not json", b"[]", b'{"served_by": "x"}'])
def test_what_is_not_a_snapshot_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a status snapshot"):
        StatusSnapshot.from_json(payload)
