"""A peer missing from the view while the store is out of reach is not
taken as gone: the last known view serves until the store is back and
peers had ``store_outage_grace_s`` to refresh."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from meshserve._clock import ManualClock
from meshserve._ids import InstanceId, ModelId
from meshserve.mesh._mesh_view import LOADED, MeshView
from meshserve.mesh._store_contact import StoreContact
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, ModelRecord, Registry
from meshserve.settings import MeshSettings
from meshserve.store import KeptLease, SqliteStore

SELF = InstanceId("i-1")
PEER = InstanceId("i-2")
LABELS = ("mt:fake",)
GRACE_S = 10.0


@dataclass
class Viewed:
    view: MeshView
    contact: StoreContact
    clock: ManualClock
    registry: Registry
    peer_lease: KeptLease


@pytest.fixture
async def viewed(tmp_path: pathlib.Path) -> AsyncIterator[Viewed]:
    clock = ManualClock()
    contact = StoreContact(clock=clock, grace_s=GRACE_S)
    async with (
        SqliteStore.open(tmp_path / "store.db") as store,
        Registry.open(store) as registry,
        store.lease(30.0) as lease,
    ):
        await registry.put_instance(
            InstanceRecord(
                instance_id=PEER, address="127.0.0.1:1", capacity_bytes=10**9, labels=LABELS
            ),
            lease=lease.id,
        )
        await registry.create_model(ModelRecord(model_id=ModelId("m"), type="fake", path="/m"))
        await registry.put_copy(
            CopyRecord(model_id=ModelId("m"), instance_id=PEER, state=CopyState.LOADED, time_ms=1),
            lease=lease.id,
        )
        view = MeshView(
            registry=registry,
            instance_id=SELF,
            settings=MeshSettings(),
            clock=clock,
            describe=lambda: InstanceRecord(
                instance_id=SELF, address="127.0.0.1:2", capacity_bytes=10**9, labels=LABELS
            ),
            default_model_size=1000,
            contact=contact,
        )
        yield Viewed(view, contact, clock, registry, lease)


async def _peer_vanishes(viewed: Viewed) -> None:
    """The peer's lease goes, and with it its records from the mirror."""
    await viewed.peer_lease.revoke()
    async with asyncio.timeout(5):
        while viewed.registry.instance(PEER) is not None or viewed.registry.copies("m"):
            await asyncio.sleep(0.01)


def _peers(view: MeshView) -> set[str]:
    return {r.instance_id for r in view.live_instances()} - {SELF}


async def test_in_contact_a_vanished_peer_is_gone_at_once(viewed: Viewed) -> None:
    await _peer_vanishes(viewed)
    assert viewed.view.trusts_absences()
    assert viewed.view.remote_copies("m", states=LOADED) == []
    assert _peers(viewed.view) == set()


async def test_the_last_known_view_serves_through_an_outage_and_its_grace(
    viewed: Viewed,
) -> None:
    view, contact, clock = viewed.view, viewed.contact, viewed.clock
    contact.note(False)  # a lease refresh found the store unreachable
    await _peer_vanishes(viewed)  # e.g. its lease expired meanwhile
    assert not view.trusts_absences()
    assert [c.instance_id for c in view.remote_copies("m", states=LOADED)] == [PEER]
    assert view.copies("m", states=LOADED)[0].instance_id == PEER
    picked = view.pick_copy("m", set())
    assert picked is not None and picked.instance_id == PEER
    assert not view.is_draining(PEER)
    assert _peers(view) == {PEER}
    clock.advance(60)  # however long the outage lasts
    assert _peers(view) == {PEER}
    # Back in touch: the peer has the grace to refresh before it counts as gone.
    contact.note(True)
    clock.advance(GRACE_S - 1)
    assert not view.trusts_absences()
    assert _peers(view) == {PEER}
    clock.advance(1)
    assert view.trusts_absences()
    assert view.remote_copies("m", states=LOADED) == []
    assert _peers(view) == set()
    assert view.pick_copy("m", set()) is None


async def test_a_peer_that_does_not_answer_is_skipped_even_during_an_outage(
    viewed: Viewed,
) -> None:
    viewed.contact.lost()
    await _peer_vanishes(viewed)
    viewed.view.mark_unreachable(PEER)  # evidence: it did not answer
    assert viewed.view.pick_copy("m", set()) is None
    assert _peers(viewed.view) == set()


async def test_a_peer_back_in_the_mirror_is_its_current_record(viewed: Viewed) -> None:
    viewed.contact.lost()
    async with viewed.registry.store.lease(30.0) as lease:
        fresh = InstanceRecord(
            instance_id=PEER, address="127.0.0.1:9", capacity_bytes=10**9, labels=LABELS
        )
        await viewed.registry.put_instance(fresh, lease=lease.id)
        assert viewed.view.instance(PEER) == fresh


def test_contact_is_evidence_only_after_the_grace() -> None:
    clock = ManualClock()
    contact = StoreContact(clock=clock, grace_s=2.0)
    assert contact.in_contact and contact.absences_are_evidence()
    lost: list[None] = []
    contact.lost_event.subscribe(lost.append)
    contact.note(False)
    contact.note(False)
    assert lost == [None]  # once per outage
    assert not contact.in_contact and not contact.absences_are_evidence()
    contact.note(True)
    assert contact.in_contact and not contact.absences_are_evidence()
    clock.advance(2.0)
    assert contact.absences_are_evidence()
