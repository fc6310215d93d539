"""The contract every ``meshserve.store.Store`` backend passes.

A backend's test module subclasses ``StoreContract`` (as ``Test...``) and
defines one fixture, ``harness``, yielding a ``StoreHarness``:

    class TestSqliteContract(StoreContract):
        @pytest.fixture
        async def harness(self, tmp_path) -> AsyncIterator[StoreHarness]:
            ...

Each test gets a store in which nothing under its keys exists yet (a fresh
database, or a PrefixedStore with a unique root on an etcd started for the
test module). Tests assert relative revisions (later > earlier, equal
within one call), never absolute numbers; a few assert that a call did *not*
bump the revision, so nobody else may write to the store during a test.
Time is moved by ``harness.pass_time``: fake time where the backend takes an
injected clock, real sleeps otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

from meshserve.store import (
    CompactedError,
    Compare,
    DeleteOp,
    DeletePrefixOp,
    Election,
    Event,
    EventKind,
    LeaseExpiredError,
    LeaseState,
    PrefixedStore,
    PutOp,
    Store,
    WatchStream,
)

__all__ = ["StoreContract", "StoreHarness", "collect_events", "eventually"]

WAIT = 5.0
"""Seconds any single expected event may take (generous: CI machines stall)."""


@dataclass(kw_only=True)
class StoreHarness:
    store: Store
    """The store under test."""
    second_client: Callable[[], contextlib.AbstractAsyncContextManager[Store]]
    """Opens another client of the same store (another connection/process view)."""
    pass_time: Callable[[float], Awaitable[None]]
    """Let this many seconds pass for lease expiry, then give the backend time
    to act on it (SQLite: advance a fake clock and wait for a sweep; etcd:
    sleep)."""
    ttl: float
    """A TTL the backend honours exactly enough for tests (etcd: >= 2 s)."""
    refresh_interval: float
    """Real seconds between keepalives of ``Store.lease`` in tests."""


async def collect_events(stream: WatchStream, count: int, *, timeout: float = WAIT) -> list[Event]:
    """The next ``count`` events of ``stream`` (batches flattened)."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            events.extend(await anext(stream))
    assert len(events) == count, f"expected {count} events, got {len(events)}: {events}"
    return events


async def assert_no_events(stream: WatchStream, *, within: float = 0.3) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            batch = await anext(stream)
            raise AssertionError(f"unexpected events: {batch}")


async def first_leader(*elections: Election, timeout: float = WAIT) -> Election:
    """Wait until one of ``elections`` leads; return it."""
    waits = {asyncio.ensure_future(e.wait_until_leader()): e for e in elections}
    try:
        async with asyncio.timeout(timeout):
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
    return waits[next(iter(done))]


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def summary(events: list[Event]) -> list[tuple[EventKind, str, bytes]]:
    return [(e.kind, e.kv.key, e.kv.value) for e in events]


class StoreContract:
    """Tests every backend must pass; see the module docstring."""

    # -- keys and revisions ---------------------------------------------------

    async def test_get_of_missing_key_is_none(self, harness: StoreHarness) -> None:
        assert await harness.store.get("missing") is None

    async def test_put_creates_then_updates_with_etcd_counters(self, harness: StoreHarness) -> None:
        store = harness.store
        first = await store.put("k", b"v1")
        kv = await store.get("k")
        assert kv is not None
        assert (kv.key, kv.value, kv.version, kv.lease) == ("k", b"v1", 1, None)
        assert kv.create_revision == kv.mod_revision == first

        second = await store.put("k", b"v2")
        assert second > first
        kv = await store.get("k")
        assert kv is not None
        assert (kv.value, kv.version, kv.create_revision, kv.mod_revision) == (
            b"v2",
            2,
            first,
            second,
        )
        assert await store.current_revision() >= second

    async def test_recreated_key_starts_a_new_life(self, harness: StoreHarness) -> None:
        store = harness.store
        await store.put("k", b"a")
        await store.put("k", b"b")
        assert await store.delete("k") is True
        again = await store.put("k", b"c")
        kv = await store.get("k")
        assert kv is not None
        assert (kv.version, kv.create_revision, kv.mod_revision) == (1, again, again)

    async def test_deleting_a_missing_key_changes_nothing(self, harness: StoreHarness) -> None:
        store = harness.store
        await store.put("other", b"x")
        before = await store.current_revision()
        assert await store.delete("missing") is False
        assert await store.delete_prefix("missing/") == 0
        assert await store.current_revision() == before

    async def test_empty_key_is_refused(self, harness: StoreHarness) -> None:
        with pytest.raises(ValueError):
            await harness.store.put("", b"x")

    async def test_range_is_sorted_by_utf8_bytes_and_bounded_by_prefix(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        for key in ["a/z", "a/B", "a/\u00e9", "a/a", "a/\U0001f600", "ab", "a", "b/x"]:
            await store.put(key, key.encode())
        last = await store.put("a/b", b"a/b")
        result = await store.range("a/")
        expected = sorted(["a/z", "a/B", "a/\u00e9", "a/a", "a/\U0001f600", "a/b"], key=str.encode)
        assert [kv.key for kv in result.kvs] == expected
        assert [kv.value for kv in result.kvs] == [k.encode() for k in expected]
        assert result.revision >= last
        assert [kv.key for kv in (await store.range("a")).kvs] == ["a", *expected, "ab"]
        assert (await store.range("c/")).kvs == ()

    async def test_delete_prefix_removes_only_its_keys_in_one_revision(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        for key in ["p/1", "p/2", "p/3/x", "pq", "q"]:
            await store.put(key, b"")
        async with store.watch("") as events:
            assert await store.delete_prefix("p/") == 3
            deleted = await collect_events(events, 3)
        assert [e.kv.key for e in deleted] == ["p/1", "p/2", "p/3/x"]
        assert {e.kind for e in deleted} == {EventKind.DELETE}
        assert len({e.revision for e in deleted}) == 1
        assert [kv.key for kv in (await store.range("")).kvs] == ["pq", "q"]

    # -- compare-and-swap -------------------------------------------------------

    async def test_put_if_zero_creates_only_if_absent(self, harness: StoreHarness) -> None:
        store = harness.store
        created = await store.put_if("k", b"first", expected_mod_revision=0)
        assert created is not None
        assert await store.put_if("k", b"second", expected_mod_revision=0) is None
        kv = await store.get("k")
        assert kv is not None
        assert (kv.value, kv.mod_revision) == (b"first", created)

    async def test_put_if_swaps_only_on_the_expected_revision(self, harness: StoreHarness) -> None:
        store = harness.store
        first = await store.put("k", b"1")
        second = await store.put_if("k", b"2", expected_mod_revision=first)
        assert second is not None and second > first
        assert await store.put_if("k", b"stale", expected_mod_revision=first) is None
        kv = await store.get("k")
        assert kv is not None
        assert (kv.value, kv.mod_revision, kv.version) == (b"2", second, 2)

    async def test_delete_if_deletes_only_on_the_expected_revision(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        first = await store.put("k", b"1")
        second = await store.put("k", b"2")
        assert await store.delete_if("k", expected_mod_revision=first) is False
        assert await store.get("k") is not None
        assert await store.delete_if("k", expected_mod_revision=second) is True
        assert await store.get("k") is None
        assert await store.delete_if("k", expected_mod_revision=second) is False

    async def test_concurrent_put_if_has_exactly_one_winner(self, harness: StoreHarness) -> None:
        store = harness.store
        base = await store.put("k", b"base")
        async with harness.second_client() as other:
            clients = [store, other] * 10
            results = await asyncio.gather(
                *(
                    client.put_if("k", f"w{i}".encode(), expected_mod_revision=base)
                    for i, client in enumerate(clients)
                )
            )
        winners = [i for i, r in enumerate(results) if r is not None]
        assert len(winners) == 1
        kv = await store.get("k")
        assert kv is not None
        assert kv.value == f"w{winners[0]}".encode()
        assert kv.mod_revision == results[winners[0]]

    async def test_cas_increments_from_two_clients_lose_no_update(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        await store.put("counter", b"0")

        async def increment(client: Store, times: int) -> None:
            for _ in range(times):
                while True:
                    kv = await client.get("counter")
                    assert kv is not None
                    value = str(int(kv.value) + 1).encode()
                    if await client.put_if("counter", value, expected_mod_revision=kv.mod_revision):
                        break

        async with harness.second_client() as other:
            await asyncio.gather(increment(store, 15), increment(other, 15), increment(store, 15))
        kv = await store.get("counter")
        assert kv is not None
        assert kv.value == b"45"

    async def test_txn_applies_all_ops_in_one_revision_or_none(self, harness: StoreHarness) -> None:
        store = harness.store
        rev_a = await store.put("a", b"1")
        await store.put("old/1", b"")
        await store.put("old/2", b"")

        failed = await store.txn(
            [Compare(key="a", mod_revision=rev_a), Compare(key="b", mod_revision=1)],
            [PutOp("a", b"2"), PutOp("c", b"3")],
        )
        assert failed.succeeded is False
        assert failed.revision == await store.current_revision()
        unchanged = await store.get("a")
        assert unchanged is not None and unchanged.value == b"1"
        assert await store.get("c") is None

        async with store.watch("") as events:
            done = await store.txn(
                [Compare(key="a", mod_revision=rev_a), Compare(key="b", mod_revision=0)],
                [PutOp("a", b"2"), PutOp("b", b"3"), DeleteOp("zz"), DeletePrefixOp("old/")],
            )
            assert done.succeeded is True
            changes = await collect_events(events, 4)
        assert summary(changes) == [
            (EventKind.PUT, "a", b"2"),
            (EventKind.PUT, "b", b"3"),
            (EventKind.DELETE, "old/1", b""),
            (EventKind.DELETE, "old/2", b""),
        ]
        assert {e.revision for e in changes} == {done.revision}

    async def test_txn_refuses_overlapping_ops(self, harness: StoreHarness) -> None:
        store = harness.store
        with pytest.raises(ValueError):
            await store.txn([], [PutOp("k", b"1"), PutOp("k", b"2")])
        with pytest.raises(ValueError):
            await store.txn([], [PutOp("p/k", b"1"), DeletePrefixOp("p/")])
        assert await store.get("k") is None

    # -- leases -------------------------------------------------------------------

    async def test_revoking_a_lease_deletes_its_keys_with_events(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        lease = await store.grant_lease(harness.ttl)
        await store.put("l/a", b"1", lease=lease)
        await store.put("l/b", b"2", lease=lease)
        await store.put("l/c", b"3")
        kv = await store.get("l/a")
        assert kv is not None and kv.lease == lease
        async with store.watch("l/") as events:
            await store.revoke_lease(lease)
            deleted = await collect_events(events, 2)
        assert [(e.kind, e.kv.key) for e in deleted] == [
            (EventKind.DELETE, "l/a"),
            (EventKind.DELETE, "l/b"),
        ]
        assert [e.prev.value if e.prev else None for e in deleted] == [b"1", b"2"]
        assert [kv.key for kv in (await store.range("l/")).kvs] == ["l/c"]
        await store.revoke_lease(lease)  # already gone: no-op

    async def test_a_dead_lease_cannot_be_used(self, harness: StoreHarness) -> None:
        store = harness.store
        lease = await store.grant_lease(harness.ttl)
        await store.revoke_lease(lease)
        with pytest.raises(LeaseExpiredError):
            await store.keepalive(lease)
        with pytest.raises(LeaseExpiredError):
            await store.put("k", b"v", lease=lease)
        with pytest.raises(LeaseExpiredError):
            await store.put_if("k", b"v", expected_mod_revision=0, lease=lease)
        assert await store.get("k") is None

    async def test_put_without_lease_detaches_the_key(self, harness: StoreHarness) -> None:
        store = harness.store
        lease = await store.grant_lease(harness.ttl)
        await store.put("k", b"leased", lease=lease)
        await store.put("k", b"free")
        await store.revoke_lease(lease)
        kv = await store.get("k")
        assert kv is not None and kv.lease is None and kv.value == b"free"

    async def test_expired_lease_deletes_keys_and_emits_delete(self, harness: StoreHarness) -> None:
        store = harness.store
        lease = await store.grant_lease(harness.ttl)
        await store.put("inst/1", b"up", lease=lease)
        async with store.watch("inst/") as events:
            await harness.pass_time(harness.ttl * 1.5)
            (gone,) = await collect_events(events, 1)
        assert (gone.kind, gone.kv.key) == (EventKind.DELETE, "inst/1")
        assert gone.prev is not None and gone.prev.value == b"up"
        assert await store.get("inst/1") is None
        with pytest.raises(LeaseExpiredError):
            await store.keepalive(lease)

    async def test_keepalive_extends_a_lease(self, harness: StoreHarness) -> None:
        store = harness.store
        lease = await store.grant_lease(harness.ttl)
        await store.put("k", b"v", lease=lease)
        for _ in range(3):
            await harness.pass_time(harness.ttl * 0.6)
            await store.keepalive(lease)
        assert await store.get("k") is not None

    async def test_kept_lease_outlives_its_ttl_and_is_revoked_on_exit(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        async with store.lease(harness.ttl, refresh_interval=harness.refresh_interval) as lease:
            await store.put("k", b"v", lease=lease.id)
            for _ in range(3):
                await harness.pass_time(harness.ttl * 0.6)
                await asyncio.sleep(harness.refresh_interval * 3)
            assert lease.is_alive
            assert await store.get("k") is not None
        assert lease.state is LeaseState.RELEASED
        assert await store.get("k") is None

    async def test_a_kept_lease_its_owner_revokes_goes_quietly(
        self, harness: StoreHarness, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = harness.store
        async with store.lease(harness.ttl, refresh_interval=harness.refresh_interval) as lease:
            await store.put("k", b"v", lease=lease.id)
            await lease.revoke()
            assert lease.state is LeaseState.RELEASED
            assert await store.get("k") is None
            # Refreshes that would have come find it released, not lost.
            await asyncio.sleep(harness.refresh_interval * 3)
            assert lease.state is LeaseState.RELEASED
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

    async def test_kept_lease_reports_loss(self, harness: StoreHarness) -> None:
        store = harness.store
        async with store.lease(harness.ttl, refresh_interval=harness.refresh_interval) as lease:
            await store.revoke_lease(lease.id)
            async with asyncio.timeout(WAIT):
                await lease.wait_lost()
            assert lease.state is LeaseState.LOST

    # -- watch --------------------------------------------------------------------

    async def test_watch_sees_later_changes_in_order_with_prev(self, harness: StoreHarness) -> None:
        store = harness.store
        await store.put("w/before", b"old")
        async with store.watch("w/") as events:
            r1 = await store.put("w/a", b"1")
            await store.put("x/other", b"ignored")
            await store.put("w", b"not under w/")
            r2 = await store.put("w/a", b"2")
            r3 = await store.put("w/b", b"3")
            assert await store.delete("w/a")
            got = await collect_events(events, 4)
            await assert_no_events(events)
        assert summary(got) == [
            (EventKind.PUT, "w/a", b"1"),
            (EventKind.PUT, "w/a", b"2"),
            (EventKind.PUT, "w/b", b"3"),
            (EventKind.DELETE, "w/a", b""),
        ]
        assert [e.revision for e in got[:3]] == [r1, r2, r3]
        assert got[0].prev is None
        assert got[1].prev is not None and got[1].prev.value == b"1"
        assert got[1].kv.version == 2 and got[1].kv.create_revision == r1
        assert got[3].prev is not None and got[3].prev.mod_revision == r2
        assert got[3].revision > r3

    async def test_watch_from_a_listed_revision_has_no_gap(self, harness: StoreHarness) -> None:
        store = harness.store
        await store.put("m/1", b"a")
        listed = await store.range("m/")
        await store.put("m/2", b"b")  # between list and watch
        async with store.watch("m/", start_revision=listed.revision + 1) as events:
            await store.put("m/3", b"c")
            got = await collect_events(events, 2)
        assert [e.kv.key for e in got] == ["m/2", "m/3"]

    async def test_watch_resumes_after_reconnect_without_gap_or_repeat(
        self, harness: StoreHarness
    ) -> None:
        store = harness.store
        start = await store.put("r/0", b"0")
        async with store.watch("r/", start_revision=start) as events:
            for i in range(1, 5):
                await store.put(f"r/{i}", str(i).encode())
            first = await collect_events(events, 3)
        # "Disconnected": these writes happen while nobody watches.
        async with harness.second_client() as other:
            for i in range(5, 8):
                await other.put(f"r/{i}", str(i).encode())
        async with store.watch("r/", start_revision=first[-1].revision + 1) as events:
            rest = await collect_events(events, 5)
            await assert_no_events(events)
        assert [e.kv.key for e in first + rest] == [f"r/{i}" for i in range(8)]

    async def test_watch_sees_writes_of_another_client(self, harness: StoreHarness) -> None:
        store = harness.store
        async with harness.second_client() as other, store.watch("s/") as events:
            await other.put("s/1", b"x")
            await store.put("s/2", b"y")
            await other.delete("s/1")
            got = await collect_events(events, 3)
        assert summary(got) == [
            (EventKind.PUT, "s/1", b"x"),
            (EventKind.PUT, "s/2", b"y"),
            (EventKind.DELETE, "s/1", b""),
        ]
        assert [e.revision for e in got] == sorted(e.revision for e in got)

    async def test_watch_from_compacted_revision_raises(self, harness: StoreHarness) -> None:
        store = harness.store
        early = await store.put("c/1", b"1")
        await store.put("c/2", b"2")
        compacted = await store.put("c/3", b"3")
        later = await store.put("c/4", b"4")
        await store.compact(compacted)
        with pytest.raises(CompactedError) as caught:
            async with store.watch("c/", start_revision=early):
                pass
        assert caught.value.compact_revision >= compacted
        async with store.watch("c/", start_revision=later) as events:
            (event,) = await collect_events(events, 1)
        assert event.kv.key == "c/4"

    async def test_compacting_the_future_is_refused(self, harness: StoreHarness) -> None:
        store = harness.store
        now = await store.put("k", b"v")
        with pytest.raises(ValueError):
            await store.compact(now + 1000)

    # -- root prefix -----------------------------------------------------------------

    async def test_prefixed_stores_do_not_see_each_other(self, harness: StoreHarness) -> None:
        one = PrefixedStore(harness.store, "mesh-1/")
        two = PrefixedStore(harness.store, "mesh-2/")
        async with two.watch("") as two_events:
            rev = await one.put("models/a", b"1")
            await two.put("models/a", b"2")
            (seen,) = await collect_events(two_events, 1)
        assert (seen.kv.key, seen.kv.value) == ("models/a", b"2")
        kv = await one.get("models/a")
        assert kv is not None and (kv.key, kv.value, kv.mod_revision) == ("models/a", b"1", rev)
        assert [kv.key for kv in (await one.range("")).kvs] == ["models/a"]
        assert await one.put_if("models/a", b"x", expected_mod_revision=0) is None
        assert await one.delete_prefix("") == 1
        assert await one.get("models/a") is None
        assert (await two.get("models/a")) is not None
        raw = await harness.store.get("mesh-2/models/a")
        assert raw is not None and raw.value == b"2"

    # -- leader election -----------------------------------------------------------

    def election(self, store: Store, who: str, harness: StoreHarness) -> Election:
        return Election(
            store,
            name="controller",
            candidate_id=who,
            ttl=harness.ttl,
            rejoin_delay=1.0,
            retry_interval=0.05,
        )

    async def test_one_of_two_candidates_leads(self, harness: StoreHarness) -> None:
        async with (
            harness.second_client() as other,
            self.election(harness.store, "a", harness) as a,
            self.election(other, "b", harness) as b,
        ):
            await first_leader(a, b)
            await asyncio.sleep(0.2)
            assert [a.is_leader, b.is_leader].count(True) == 1
            leader = a if a.is_leader else b
            assert await a.leader() == leader.candidate_id
            assert leader.term is not None

    async def test_resigning_leader_hands_over(self, harness: StoreHarness) -> None:
        async with (
            harness.second_client() as other,
            contextlib.AsyncExitStack() as a_scope,
            contextlib.AsyncExitStack() as b_scope,
        ):
            a = await a_scope.enter_async_context(self.election(harness.store, "a", harness))
            b = await b_scope.enter_async_context(self.election(other, "b", harness))
            leader = await first_leader(a, b)
            follower, leader_scope = (b, a_scope) if leader is a else (a, b_scope)
            await asyncio.sleep(0.1)
            assert not follower.is_leader
            await leader_scope.aclose()
            assert not leader.is_leader
            async with asyncio.timeout(WAIT):
                await follower.wait_until_leader()
            assert await follower.leader() == follower.candidate_id

    async def test_leader_whose_lease_is_revoked_steps_down(self, harness: StoreHarness) -> None:
        async with (
            harness.second_client() as other,
            self.election(harness.store, "a", harness) as a,
        ):
            async with asyncio.timeout(WAIT):
                await a.wait_until_leader()
            async with self.election(other, "b", harness) as b:
                latch = await harness.store.get(a.key)
                assert latch is not None and latch.lease is not None
                await other.revoke_lease(latch.lease)
                async with asyncio.timeout(WAIT):
                    await a.wait_until_not_leader()
                    await b.wait_until_leader()
                assert await b.leader() == "b"
                assert not a.is_leader
