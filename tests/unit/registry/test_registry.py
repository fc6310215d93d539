import asyncio
import pathlib
from collections.abc import Callable

from meshserve.registry import (
    CopyRecord,
    CopyState,
    InstanceRecord,
    ModelRecord,
    Registry,
    VModelRecord,
)
from meshserve.registry._records import decode_record, encode_record
from meshserve.store import SqliteStore


def test_records_round_trip_and_ignore_unknown_fields() -> None:
    record = ModelRecord(model_id="m", type="onnx", path="/p", auto_delete=True, last_used_ms=5)
    assert decode_record(ModelRecord, encode_record(record)) == record
    newer = b'{"model_id": "m", "type": "onnx", "from_the_future": 1}'
    assert decode_record(ModelRecord, newer) == ModelRecord(model_id="m", type="onnx")


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_mirror_follows_writes_from_another_client(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "store.db"
    async with (
        SqliteStore.open(path) as mine,
        SqliteStore.open(path) as theirs,
        Registry.open(mine) as registry,
        Registry.open(theirs) as other,
    ):
        assert await other.create_model(ModelRecord(model_id="m", type="onnx"))
        await _until(lambda: registry.model("m") is not None)
        vmodel = VModelRecord(vmodel_id="v", active_model_id="m", target_model_id="m")
        assert await other.create_vmodel(vmodel)
        await _until(lambda: registry.referencing_vmodels("m") == ["v"])
        # Compare-and-swap against a stale revision loses.
        stale = registry.vmodels["v"].revision
        moved = VModelRecord(vmodel_id="v", active_model_id="m", target_model_id="n")
        assert await other.update_vmodel(moved, expected_revision=stale)
        assert not await other.update_vmodel(moved, expected_revision=stale)
        await _until(lambda: registry.vmodel("v") == moved)
        assert moved.transitioning
        assert await other.delete_vmodel("v", expected_revision=other.vmodels["v"].revision)
        await _until(lambda: registry.vmodel("v") is None)
        assert not await registry.create_model(ModelRecord(model_id="m", type="x"))


def test_a_last_use_from_before_registration_is_no_request() -> None:
    registered = ModelRecord(model_id="m", type="onnx", registered_ms=10_000, last_used_ms=4_000)
    assert registered.last_requested_ms == 0  # the eviction priority given at registration
    used = ModelRecord(model_id="m", type="onnx", registered_ms=10_000, last_used_ms=12_000)
    assert used.last_requested_ms == 12_000


def test_a_copy_record_carries_its_size() -> None:
    copy = CopyRecord(
        model_id="m", instance_id="i", state=CopyState.LOADED, time_ms=1, size_bytes=4096
    )
    assert decode_record(CopyRecord, encode_record(copy)) == copy
    # One written before copies had sizes reads as size 0.
    older = b'{"model_id": "m", "instance_id": "i", "state": "loaded", "time_ms": 1}'
    assert decode_record(CopyRecord, older).size_bytes == 0


async def test_copies_written_together_reach_every_mirror(tmp_path: pathlib.Path) -> None:
    """put_copies: one transaction (one revision) for many copies, mirrored
    by the writer at once and by other clients through the watch."""
    path = tmp_path / "store.db"
    async with (
        SqliteStore.open(path) as mine,
        SqliteStore.open(path) as theirs,
        Registry.open(mine) as registry,
        Registry.open(theirs) as other,
    ):
        lease = await mine.grant_lease(30)
        before = await mine.current_revision()
        copies = [
            CopyRecord(model_id=f"m{i}", instance_id="i", state=CopyState.LOADED, time_ms=i)
            for i in range(50)
        ]
        await registry.put_copies(copies, lease=lease)
        assert await mine.current_revision() == before + 1
        assert [registry.copies(f"m{i}")["i"] for i in range(50)] == copies
        await _until(lambda: len(other.copies_on("i")) == 50)
        assert sorted(other.copies_on("i"), key=lambda c: c.time_ms) == copies


def test_an_instance_record_publishes_its_data_port_and_an_older_one_has_none() -> None:
    record = InstanceRecord(instance_id="i", address="10.0.0.1:8080", data_address="10.0.0.1:11881")
    assert decode_record(InstanceRecord, encode_record(record)) == record
    # Written by a version without the data port: forwards to it use gRPC.
    older = b'{"instance_id": "i", "address": "10.0.0.1:8080"}'
    assert decode_record(InstanceRecord, older).data_address == ""
