"""SqliteStore: the store contract, plus what only a shared file can show."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import stat
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import meshserve.store
from meshserve.store import (
    CompactedError,
    Election,
    EventKind,
    LeaseState,
    ManualClock,
    SqliteSettings,
    SqliteStore,
    StoreClosedError,
    StoreState,
    StoreUnavailableError,
)
from tests.unit.store.store_contract import StoreContract, StoreHarness, collect_events, eventually

FAST = SqliteSettings(poll_interval=0.02, sweep_interval=0.02)


class TestSqliteStoreContract(StoreContract):
    @pytest.fixture
    async def harness(self, tmp_path: Path) -> AsyncIterator[StoreHarness]:
        clock = ManualClock()
        path = tmp_path / "store.db"

        async def pass_time(seconds: float) -> None:
            clock.advance(seconds)
            await asyncio.sleep(FAST.sweep_interval * 4)

        def second_client() -> contextlib.AbstractAsyncContextManager[SqliteStore]:
            return SqliteStore.open(path, settings=FAST, clock=clock)

        async with SqliteStore.open(path, settings=FAST, clock=clock) as store:
            yield StoreHarness(
                store=store,
                second_client=second_client,
                pass_time=pass_time,
                ttl=10.0,
                refresh_interval=0.05,
            )


# -- other processes ----------------------------------------------------------


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Child processes started by a test; killed if still running at its end."""
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def start_script(
    processes: list[asyncio.subprocess.Process], script: str, *args: str
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(script),
        *args,
        stdout=asyncio.subprocess.PIPE,
    )
    processes.append(proc)
    return proc


WRITER = """
    import asyncio, sys
    from meshserve.store import SqliteStore

    async def main(path: str, name: str, count: int) -> None:
        async with SqliteStore.open(path) as store:
            for i in range(count):
                await store.put(f"proc/{name}/{i:03d}", name.encode())

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

INCREMENTER = """
    import asyncio, sys
    from meshserve.store import SqliteStore

    async def main(path: str, count: int) -> None:
        async with SqliteStore.open(path) as store:
            for _ in range(count):
                while True:
                    kv = await store.get("counter")
                    value = str(int(kv.value) + 1).encode()
                    if await store.put_if("counter", value, expected_mod_revision=kv.mod_revision):
                        break

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""

CANDIDATE = """
    import asyncio, sys
    from meshserve.store import Election, SqliteSettings, SqliteStore

    async def main(path: str) -> None:
        settings = SqliteSettings(poll_interval=0.02, sweep_interval=0.05)
        async with SqliteStore.open(path, settings=settings) as store:
            async with Election(store, name="ctl", candidate_id="child", ttl=1.0) as election:
                await election.wait_until_leader()
                print("leader", flush=True)
                await asyncio.Event().wait()

    asyncio.run(main(sys.argv[1]))
"""


async def test_watch_sees_every_write_of_other_processes_in_order(
    tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    path = str(tmp_path / "store.db")
    count = 40
    async with SqliteStore.open(path, settings=FAST) as store, store.watch("proc/") as events:
        writers = [await start_script(processes, WRITER, path, name, str(count)) for name in "ab"]
        for i in range(count):
            await store.put(f"proc/main/{i:03d}", b"main")
        assert [await w.wait() for w in writers] == [0, 0]
        got = await collect_events(events, 3 * count, timeout=20)
        listed = await store.range("proc/")

    revisions = [e.revision for e in got]
    assert revisions == sorted(set(revisions)), "events out of order or repeated"
    for name in ["a", "b", "main"]:
        mine = [e.kv.key for e in got if e.kv.value == name.encode()]
        assert mine == [f"proc/{name}/{i:03d}" for i in range(count)]
    assert sorted(e.kv.key for e in got) == [kv.key for kv in listed.kvs]


async def test_cas_across_processes_loses_no_update(
    tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    path = str(tmp_path / "store.db")
    async with SqliteStore.open(path, settings=FAST) as store:
        await store.put("counter", b"0")
        children = [await start_script(processes, INCREMENTER, path, "25") for _ in range(3)]
        assert [await c.wait() for c in children] == [0, 0, 0]
        kv = await store.get("counter")
    assert kv is not None and kv.value == b"75" and kv.version == 76


async def test_leader_process_killed_hands_over_after_its_ttl(
    tmp_path: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    path = str(tmp_path / "store.db")
    child = await start_script(processes, CANDIDATE, path)
    assert child.stdout is not None
    async with asyncio.timeout(10):
        assert await child.stdout.readline() == b"leader\n"
    async with (
        SqliteStore.open(path, settings=FAST) as store,
        Election(store, name="ctl", candidate_id="parent", ttl=1.0) as election,
    ):
        await asyncio.sleep(0.3)
        assert not election.is_leader
        assert await election.leader() == "child"
        child.send_signal(signal.SIGKILL)
        await child.wait()
        async with asyncio.timeout(5):
            await election.wait_until_leader()
        assert await election.leader() == "parent"


# -- the file -------------------------------------------------------------------


async def test_registrations_survive_reopen_and_dead_leases_do_not(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    clock = ManualClock()
    async with SqliteStore.open(path, settings=FAST, clock=clock) as store:
        await store.put("registry/m1", b"model")
        lease = await store.grant_lease(5.0)
        last = await store.put("instances/i1", b"up", lease=lease)
    clock.advance(10.0)  # the process was down longer than the lease's TTL
    async with SqliteStore.open(path, settings=FAST, clock=clock) as store:
        kv = await store.get("registry/m1")
        assert kv is not None and kv.value == b"model"
        assert await store.get("instances/i1") is None
        assert await store.current_revision() == last + 1
        async with store.watch("", start_revision=last + 1) as events:
            (gone,) = await collect_events(events, 1)
        assert (gone.kind, gone.kv.key) == (EventKind.DELETE, "instances/i1")
        assert await store.put("registry/m2", b"") == last + 2


async def test_a_locked_database_is_reported_as_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    settings = SqliteSettings(busy_timeout=0.1)
    async with SqliteStore.open(path, settings=settings) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailableError) as caught:
                await store.put("k", b"v")
            assert caught.value.retryable
            blocker.execute("ROLLBACK")
            await store.put("k", b"v")
        finally:
            blocker.close()


async def test_an_unreachable_store_loses_no_lease_its_answer_does(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    clock = ManualClock()
    settings = SqliteSettings(busy_timeout=0.05, sweep_interval=0.02)
    async with SqliteStore.open(path, settings=settings, clock=clock) as store:
        async with store.lease(10.0, refresh_interval=0.05) as lease:
            contacts: list[bool] = []
            lease.on_contact = contacts.append
            blocker = sqlite3.connect(path, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")  # every refresh now fails as busy
                await asyncio.sleep(0.2)
                clock.advance(20.0)  # two TTLs without a refresh
                await asyncio.sleep(0.2)
                # Not evidence: the store may hold the lease still (etcd
                # renews every lease when it comes back).
                assert lease.is_alive
                assert contacts and not any(contacts)
            finally:
                blocker.close()
            # The store answers again, and says the lease expired meanwhile.
            async with asyncio.timeout(2.0):
                await lease.wait_lost()
            assert contacts[-1] is True
        assert lease.state is LeaseState.LOST


async def test_a_kept_lease_outlives_a_short_outage(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    settings = SqliteSettings(busy_timeout=0.05, sweep_interval=0.02)
    async with (
        SqliteStore.open(path, settings=settings) as store,
        store.lease(10.0, refresh_interval=0.05) as lease,
    ):
        contacts: list[bool] = []
        lease.on_contact = contacts.append
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            await asyncio.sleep(0.2)
        finally:
            blocker.close()
        async with asyncio.timeout(2.0):
            while not contacts or not contacts[-1]:
                await asyncio.sleep(0.02)
        assert False in contacts
        assert lease.is_alive


async def test_own_writes_wake_watches_without_waiting_for_the_poll(tmp_path: Path) -> None:
    slow_poll = SqliteSettings(poll_interval=30.0)
    async with SqliteStore.open(tmp_path / "s.db", settings=slow_poll) as store:
        async with store.watch("k") as events:
            await store.put("k", b"v")
            (event,) = await collect_events(events, 1, timeout=2.0)
        assert event.kv.value == b"v"


async def test_watch_that_fell_behind_another_process_compaction_fails(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with (
        SqliteStore.open(path, settings=SqliteSettings(poll_interval=30.0)) as slow,
        SqliteStore.open(path, settings=FAST) as other,
        slow.watch("k/") as events,
    ):
        for i in range(3):
            await other.put(f"k/{i}", b"")
        await other.compact(await other.current_revision())
        await slow.put("unrelated", b"")  # wakes the slow store's watches
        with pytest.raises(CompactedError):
            await collect_events(events, 1)


async def test_history_is_compacted_by_count(tmp_path: Path) -> None:
    settings = SqliteSettings(
        poll_interval=0.02, history_max_revisions=3, compaction_interval=0.02, sweep_interval=0.02
    )
    async with SqliteStore.open(tmp_path / "s.db", settings=settings) as store:
        first = await store.put("k", b"0")
        for i in range(1, 10):
            last = await store.put("k", str(i).encode())

        async def first_is_compacted() -> bool:
            try:
                async with store.watch("k", start_revision=first):
                    return False
            except CompactedError:
                return True

        await eventually(first_is_compacted)
        async with store.watch("k", start_revision=last - 2) as events:
            got = await collect_events(events, 3)
        assert [e.kv.value for e in got] == [b"7", b"8", b"9"]


async def test_watches_end_when_the_store_closes(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as scope:
        store = await scope.enter_async_context(SqliteStore.open(tmp_path / "s.db", settings=FAST))
        subscribed = asyncio.Event()

        async def consume() -> None:
            async with store.watch("") as events:
                subscribed.set()
                async for _ in events:
                    pass

        consumer = asyncio.create_task(consume())
        await subscribed.wait()
    assert store.state is StoreState.CLOSED
    with pytest.raises(StoreClosedError):
        await asyncio.wait_for(consumer, 2.0)
    with pytest.raises(StoreClosedError):
        await store.get("k")


async def test_closing_leaves_no_background_task(tmp_path: Path) -> None:
    before = asyncio.all_tasks()
    async with SqliteStore.open(tmp_path / "s.db", settings=FAST) as store, store.lease(1.0):
        assert len(asyncio.all_tasks() - before) >= 3  # poll, maintain, lease keeper
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        SqliteSettings(poll_interval=0)
    with pytest.raises(ValueError):
        SqliteSettings(history_max_revisions=-1)


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(start_time=100.0)
    clock.advance(2.5)
    assert (clock.time(), clock.monotonic()) == (102.5, 2.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_public_names_exist() -> None:
    for name in meshserve.store.__all__:
        assert getattr(meshserve.store, name) is not None


@pytest.mark.parametrize("existing", [False, True])
async def test_the_database_and_its_companions_are_private(tmp_path: Path, existing: bool) -> None:
    """The store holds every resource and sealed Secret: another user (the
    runtime's) must not read it, whatever the umask or an older version left."""
    path = tmp_path / "store.db"
    if existing:
        sqlite3.connect(path).close()
        path.chmod(0o644)
    previous = os.umask(0o022)
    try:
        async with SqliteStore.open(path, settings=FAST, clock=ManualClock()) as store:
            await store.put("k", b"v")
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(file.exists() for file in files)
            for file in files:
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        os.umask(previous)
