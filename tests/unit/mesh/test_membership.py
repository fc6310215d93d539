"""Membership: queued copy changes reach the store, many per transaction."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
from collections.abc import Callable

from meshserve._clock import SystemClock
from meshserve._ids import InstanceId, ModelId
from meshserve.mesh._membership import Membership
from meshserve.mesh._store_contact import StoreContact
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, Registry
from meshserve.store import SqliteStore

INSTANCE = InstanceId("i")


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def _copy(index: int) -> CopyRecord:
    return CopyRecord(
        model_id=ModelId(f"m{index}"), instance_id=INSTANCE, state=CopyState.LOADED, time_ms=index
    )


async def test_a_burst_of_copy_changes_is_written_in_few_transactions(
    tmp_path: pathlib.Path,
) -> None:
    async with (
        SqliteStore.open(tmp_path / "store.db") as store,
        Registry.open(store) as registry,
    ):
        membership = Membership(
            store=store,
            registry=registry,
            instance_id=INSTANCE,
            lease_ttl_s=30,
            publish_interval_s=5,
            describe=lambda: InstanceRecord(instance_id=INSTANCE, address="a:1", capacity_bytes=1),
            current_copies=lambda: [],
            contact=StoreContact(clock=SystemClock(), grace_s=30),
        )
        async with membership.running():
            before = await store.current_revision()
            for index in range(300):
                membership.copy_changed(f"m{index}", _copy(index))
            await _until(lambda: len(registry.copies_on(INSTANCE)) == 300)
            # 300 puts in batches of 64; the instance record may be rewritten.
            assert await store.current_revision() - before <= 7
            assert registry.copies("m7")[INSTANCE] == _copy(7)
            # A delete queued with newer puts: each lands.
            membership.copy_changed("m0", None)
            membership.copy_changed("m1", dataclasses.replace(_copy(1), time_ms=1001))
            await _until(lambda: not registry.copies("m0"))
            await _until(lambda: registry.copies("m1")[INSTANCE].time_ms == 1001)
