"""After a store outage, a copy loaded here meanwhile that duplicates a
peer's is trimmed once the view is refreshed; nothing is judged during it."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from meshserve._clock import ManualClock
from meshserve._ids import InstanceId, ModelId
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._parts import Parts, build_parts
from meshserve.mesh._upkeep import Upkeep
from meshserve.metrics import NullMetrics
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, ModelRecord, Registry
from meshserve.settings import CacheSettings, MeshSettings
from meshserve.store import SqliteStore
from tests.fakes import FakeRuntime

PEER = InstanceId("i-2")
LABELS = ("mt:fake",)
GRACE_S = 5.0
MODELS = ("before", "dup", "alone")


@dataclass
class Kept:
    upkeep: Upkeep
    parts: Parts
    cache: ModelCache
    clock: ManualClock

    async def load(self, model_id: str) -> None:
        await self.cache.ensure_loaded(self.parts.copies.spec(model_id), last_used_ms=1)


@pytest.fixture
async def kept(tmp_path: pathlib.Path) -> AsyncIterator[Kept]:
    clock = ManualClock()
    runtime = FakeRuntime()
    mesh = MeshSettings(store_outage_grace_s=GRACE_S)
    async with (
        SqliteStore.open(tmp_path / "store.db") as store,
        Registry.open(store) as registry,
        store.lease(30.0) as lease,
    ):
        # The peer holds "before" and "dup"; "alone" nowhere.
        await registry.put_instance(
            InstanceRecord(
                instance_id=PEER, address="127.0.0.1:1", capacity_bytes=10**9, labels=LABELS
            ),
            lease=lease.id,
        )
        for model_id in MODELS:
            await registry.create_model(
                ModelRecord(model_id=ModelId(model_id), type="fake", path=f"/{model_id}")
            )
        for model_id in ("before", "dup"):
            await registry.put_copy(
                CopyRecord(
                    model_id=ModelId(model_id), instance_id=PEER, state=CopyState.LOADED, time_ms=1
                ),
                lease=lease.id,
            )
        cache = ModelCache(
            runtime=runtime, status=await runtime.status(), settings=CacheSettings(), clock=clock
        )
        parts = build_parts(
            instance_id=InstanceId("i-1"),
            registry=registry,
            runtime=runtime,
            cache=cache,
            settings=CacheSettings(),
            mesh=mesh,
            clock=clock,
            metrics=NullMetrics(),
            labels=LABELS,
        )
        upkeep = Upkeep(
            instance_id=InstanceId("i-1"),
            registry=registry,
            cache=cache,
            copies=parts.copies,
            view=parts.view,
            rates=parts.rates,
            vmodels=parts.vmodels,
            own=parts.own,
            membership=parts.membership,
            metrics=NullMetrics(),
            clock=clock,
            settings=mesh,
            spawn=parts.background.spawn,
        )
        try:
            yield Kept(upkeep, parts, cache, clock)
        finally:
            await parts.background.close()
            await cache.close()


async def test_a_copy_loaded_during_an_outage_that_duplicates_a_peers_is_trimmed(
    kept: Kept,
) -> None:
    await kept.load("before")  # a duplicate too, but not the outage's doing
    contact = kept.parts.view.contact
    contact.lost()
    await kept.load("dup")
    await kept.load("alone")
    await kept.upkeep.rates_pass()  # nothing is judged on the last known view
    contact.regained()
    await kept.upkeep.rates_pass()  # nor within the grace
    assert all(kept.cache.is_loaded(m) for m in MODELS)
    kept.clock.advance(GRACE_S)
    await kept.upkeep.rates_pass()
    assert not kept.cache.is_loaded("dup")
    assert kept.cache.is_loaded("before")
    assert kept.cache.is_loaded("alone")  # the only copy stays


async def test_a_hot_outage_copy_is_kept(kept: Kept) -> None:
    contact = kept.parts.view.contact
    contact.lost()
    await kept.load("dup")
    for _ in range(MeshSettings().rebalance_min_rpm):
        kept.parts.rates.count("dup")
    contact.regained()
    kept.clock.advance(GRACE_S)
    await kept.upkeep.rates_pass()
    assert kept.cache.is_loaded("dup")
