"""The hop deadline: how long a forward to another instance may take, and
how a forward in flight is cut (its deadline, or its peer's lease going)."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator

import pytest

from meshserve._ids import InstanceId
from meshserve.errors import PeerTimeoutError, PeerUnreachableError
from meshserve.mesh import _hop
from meshserve.mesh._background import Background
from meshserve.mesh._hop import Forwards, hop_timeout
from meshserve.registry import InstanceRecord, Registry
from meshserve.settings import MeshSettings
from meshserve.store import SqliteStore

PEER = InstanceId("i-2")

SETTINGS = MeshSettings(
    hop_deadline_fraction=0.3,
    hop_deadline_min_s=1.0,
    hop_deadline_max_s=30.0,
    hop_deadline_default_s=20.0,
    forward_timeout_s=120.0,
)


@pytest.mark.parametrize(
    ("remaining_s", "expected_s"),
    [
        (5.0, 1.5),  # a share of the client's time: a hung peer costs 1.5 of 5 s
        (2.0, 1.0),  # never below the minimum ...
        (0.4, 0.4),  # ... unless the client has less than that left
        (0.0, 0.0),
        (300.0, 30.0),  # never above the maximum
        (None, 20.0),  # no client deadline: the default
    ],
)
def test_a_forward_to_a_loaded_copy_gets_a_bounded_share_of_the_clients_time(
    remaining_s: float | None, expected_s: float
) -> None:
    assert hop_timeout(remaining_s, loading=False, settings=SETTINGS) == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("remaining_s", "expected_s"),
    [(5.0, 5.0), (300.0, 120.0), (None, 120.0)],
)
def test_a_forward_that_loads_first_may_take_what_the_client_allows(
    remaining_s: float | None, expected_s: float
) -> None:
    assert hop_timeout(remaining_s, loading=True, settings=SETTINGS) == expected_s


# -- Forwards: the forward in the caller's task, one lease watcher per peer ---


@pytest.fixture
async def peer_registry(tmp_path: pathlib.Path) -> AsyncIterator[Registry]:
    """A registry in which PEER holds its lease."""
    async with (
        SqliteStore.open(tmp_path / "store.db") as store,
        Registry.open(store) as registry,
        store.lease(30.0) as lease,
    ):
        await registry.put_instance(
            InstanceRecord(instance_id=PEER, address="127.0.0.1:1", capacity_bytes=1, labels=()),
            lease=lease.id,
        )
        yield registry


@pytest.fixture
async def background() -> AsyncIterator[Background]:
    tasks = Background()
    try:
        yield tasks
    finally:
        await tasks.close()


async def _lease_gone(registry: Registry) -> None:
    await registry.store.delete_prefix(f"instances/{PEER}")
    while registry.instance(PEER) is not None:
        await asyncio.sleep(0.01)


async def test_forwards_run_in_the_callers_task_and_share_one_watcher_per_peer(
    peer_registry: Registry, background: Background
) -> None:
    forwards = Forwards(registry=peer_registry, spawn=background.spawn)
    caller = asyncio.current_task()
    ran_in: list[asyncio.Task[object] | None] = []
    tasks_during: list[int] = []

    async def call() -> bytes:
        ran_in.append(asyncio.current_task())
        tasks_during.append(len(asyncio.all_tasks()))
        return b"reply"

    before = len(asyncio.all_tasks())
    for _ in range(5):
        assert await forwards.call(call, peer=PEER, timeout_s=5.0) == b"reply"
    # Five forwards, one task more while each ran and after: the peer's watcher.
    assert tasks_during == [before + 1] * 5
    assert len(asyncio.all_tasks()) == before + 1
    assert ran_in == [caller] * 5
    assert forwards.watched() == {PEER}


async def test_a_peers_lease_going_cuts_every_forward_in_flight_to_it(
    peer_registry: Registry, background: Background
) -> None:
    forwards = Forwards(registry=peer_registry, spawn=background.spawn)
    started = asyncio.Event()

    async def hang() -> bytes:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    # A long hop deadline: only the lease going can end these.
    in_flight = [
        asyncio.ensure_future(forwards.call(hang, peer=PEER, timeout_s=60.0)) for _ in range(3)
    ]
    await started.wait()
    await _lease_gone(peer_registry)
    for forward in in_flight:
        with pytest.raises(PeerUnreachableError, match="left the mesh"):
            await asyncio.wait_for(forward, timeout=5.0)
    # The watcher ended with the lease; a forward to a gone peer fails at once.
    assert forwards.watched() == frozenset()
    with pytest.raises(PeerUnreachableError):
        await forwards.call(hang, peer=PEER, timeout_s=60.0)


async def test_a_forward_past_its_hop_deadline_is_a_peer_timeout(
    peer_registry: Registry, background: Background
) -> None:
    forwards = Forwards(registry=peer_registry, spawn=background.spawn)

    async def hang() -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    with pytest.raises(PeerTimeoutError, match=r"did not answer within 0\.05 s"):
        await forwards.call(hang, peer=PEER, timeout_s=0.05)


async def test_a_forward_cancelled_from_outside_stays_cancelled(
    peer_registry: Registry, background: Background
) -> None:
    forwards = Forwards(registry=peer_registry, spawn=background.spawn)
    started = asyncio.Event()

    async def hang() -> bytes:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    forward = asyncio.ensure_future(forwards.call(hang, peer=PEER, timeout_s=60.0))
    await started.wait()
    forward.cancel()  # the client went away: not the peer's fault
    with pytest.raises(asyncio.CancelledError):
        await forward


async def test_an_idle_peers_watcher_ends_and_the_next_forward_starts_another(
    peer_registry: Registry, background: Background, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hop, "_WATCH_IDLE_S", 0.2)
    forwards = Forwards(registry=peer_registry, spawn=background.spawn)

    async def call() -> bytes:
        return b"reply"

    await forwards.call(call, peer=PEER, timeout_s=5.0)
    assert forwards.watched() == {PEER}
    deadline = time.monotonic() + 5.0
    while forwards.watched():
        assert time.monotonic() < deadline, "the idle watcher did not end"
        await asyncio.sleep(0.05)
    await forwards.call(call, peer=PEER, timeout_s=5.0)
    assert forwards.watched() == {PEER}
