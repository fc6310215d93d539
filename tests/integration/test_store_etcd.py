"""EtcdStore against a real etcd: the store contract, plus what only etcd shows."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import etcd3aio
import pytest

from meshserve.store import (
    EtcdSettings,
    EtcdStore,
    PrefixedStore,
    Store,
    StoreClosedError,
    StoreUnavailableError,
)
from tests.integration._etcd import EtcdServer, free_port, run_etcd
from tests.unit.store.store_contract import StoreContract, StoreHarness, collect_events

pytestmark = pytest.mark.integration

# etcd's lessor looks for expired leases every 500 ms; 0.6 s covers that
# and the round trip, while leaving keepalives at 0.6 x TTL well inside
# the 3 s TTL.
EXPIRY_SLACK = 0.6


async def _revoke_every_lease(endpoint: str) -> None:
    """A test's leases must not expire during the next test (it would bump
    the revision under a test that asserts it did not move)."""
    async with etcd3aio.Etcd3Client([endpoint]) as client:
        assert client.lease is not None
        for lease in (await client.lease.leases(timeout=5.0)).leases:
            with contextlib.suppress(Exception):
                await client.lease.revoke(lease.ID, timeout=5.0)


class TestEtcdStoreContract(StoreContract):
    @pytest.fixture
    async def harness(self, etcd: EtcdServer) -> AsyncIterator[StoreHarness]:
        settings = EtcdSettings(endpoints=(etcd.endpoint,))
        root = f"test-{uuid.uuid4().hex}/"

        @contextlib.asynccontextmanager
        async def second_client() -> AsyncIterator[Store]:
            async with EtcdStore.open(settings) as other:
                yield PrefixedStore(other, root)

        async def pass_time(seconds: float) -> None:
            await asyncio.sleep(seconds + EXPIRY_SLACK)

        try:
            async with EtcdStore.open(settings) as store:
                yield StoreHarness(
                    store=PrefixedStore(store, root),
                    second_client=second_client,
                    pass_time=pass_time,
                    ttl=3.0,
                    refresh_interval=0.5,
                )
        finally:
            await _revoke_every_lease(etcd.endpoint)


# -- etcd only ----------------------------------------------------------------------


async def test_watches_end_when_the_store_closes(etcd: EtcdServer) -> None:
    settings = EtcdSettings(endpoints=(etcd.endpoint,))
    async with contextlib.AsyncExitStack() as scope:
        store = await scope.enter_async_context(EtcdStore.open(settings))
        subscribed = asyncio.Event()

        async def consume() -> None:
            async with store.watch("closing/") as events:
                subscribed.set()
                async for _ in events:
                    pass

        consumer = asyncio.create_task(consume())
        await subscribed.wait()
    with pytest.raises(StoreClosedError):
        await asyncio.wait_for(consumer, 2.0)
    with pytest.raises(StoreClosedError):
        await store.get("k")


async def test_closing_leaves_no_background_task(etcd: EtcdServer) -> None:
    settings = EtcdSettings(endpoints=(etcd.endpoint,))
    before = asyncio.all_tasks()
    async with EtcdStore.open(settings) as store, store.watch("idle/"), store.lease(3.0):
        assert len(asyncio.all_tasks() - before) >= 2  # watch pump, lease keeper
    # grpc.aio finishes a cancelled call's status in a task of its own.
    await asyncio.sleep(0.1)
    assert asyncio.all_tasks() - before == set()


async def test_an_unreachable_etcd_is_reported_as_unavailable() -> None:
    settings = EtcdSettings(endpoints=(f"127.0.0.1:{free_port()}",), request_timeout=0.5)
    with pytest.raises(StoreUnavailableError) as caught:
        async with EtcdStore.open(settings):
            pass
    assert caught.value.retryable


async def test_range_reads_large_prefixes_in_pages_at_one_revision(etcd: EtcdServer) -> None:
    settings = EtcdSettings(endpoints=(etcd.endpoint,))
    root = f"paged-{uuid.uuid4().hex}/"
    async with EtcdStore.open(settings) as raw:
        store = PrefixedStore(raw, root)
        keys = [f"k/{i:05d}" for i in range(2_345)]
        await asyncio.gather(*(store.put(k, b"x" * 10) for k in keys))
        listed = await store.range("k/")
        assert [kv.key for kv in listed.kvs] == keys
        assert listed.revision == max(kv.mod_revision for kv in listed.kvs)
        assert await store.delete_prefix("") == len(keys)


async def test_watch_resumes_where_it_was_when_etcd_restarts() -> None:
    with run_etcd(name="restarting") as server:
        settings = EtcdSettings(endpoints=(server.endpoint,), request_timeout=2.0)
        async with EtcdStore.open(settings) as store, store.watch("r/") as events:
            first = await store.put("r/1", b"1")
            assert [e.revision for e in await collect_events(events, 1)] == [first]
            await asyncio.to_thread(server.restart)
            # Written by another client before the watch is back: it must be
            # replayed from history, neither lost nor repeated.
            async with EtcdStore.open(settings) as other:
                await other.put("r/2", b"2")
                await other.put("r/3", b"3")
            got = await collect_events(events, 2, timeout=15.0)
            assert [(e.kv.key, e.revision) for e in got] == [("r/2", first + 1), ("r/3", first + 2)]
            await store.put("r/4", b"4")
            (last,) = await collect_events(events, 1)
            assert last.kv.key == "r/4"


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        EtcdSettings(endpoints=())
    with pytest.raises(ValueError):
        EtcdSettings(username="u")
    with pytest.raises(ValueError):
        EtcdSettings(cert_key="k.pem", cert_chain="c.pem")
    with pytest.raises(ValueError):
        EtcdSettings(request_timeout=0)
    settings = EtcdSettings(endpoints=("http://etcd-0:2379", "https://etcd-1:2379/"))
    assert settings.grpc_endpoints == ["etcd-0:2379", "etcd-1:2379"]
    assert "secret" not in repr(EtcdSettings(username="u", password="secret"))
