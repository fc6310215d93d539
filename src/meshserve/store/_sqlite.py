"""The embedded store: one SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import functools
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from meshserve import _tasks
from meshserve._clock import Clock, SystemClock
from meshserve.store import _errors
from meshserve.store._sqlite_db import SqliteDb, TxnOutcome
from meshserve.store._sqlite_settings import SqliteSettings
from meshserve.store._sqlite_watch import WatchHub
from meshserve.store._store import Store
from meshserve.store._types import (
    Compare,
    DeleteOp,
    DeletePrefixOp,
    KeyValue,
    LeaseId,
    Op,
    PutOp,
    RangeResult,
    TxnResult,
    WatchStream,
    check_key,
    check_txn,
)

__all__ = ["SqliteStore", "StoreState"]

_log = logging.getLogger("meshserve.store")
_T = TypeVar("_T")


class StoreState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SqliteStore(Store):
    """The coordination store in a SQLite file (WAL mode).

    Several processes may open the same file: writes serialise on SQLite's
    write lock, and each store object polls the shared event log every
    ``settings.poll_interval`` to feed its watches (its own writes wake them
    at once). Expired leases are swept by every write and by a background
    task; the event log is compacted by another. Both tasks are owned by the
    ``open`` context manager and end with it.

    All SQL runs on one thread per store object, never on the event loop. A
    call cancelled while its SQL runs may still take effect.
    """

    def __init__(self, *, path: str | os.PathLike[str], settings: SqliteSettings, clock: Clock):
        """Prefer ``SqliteStore.open``; a store made here is not usable yet."""
        self._path = os.fspath(path)
        self._settings = settings
        self._clock = clock
        self._state = StoreState.NEW
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._db: SqliteDb | None = None
        self._hub = WatchHub(
            call=self._call, max_revisions_per_poll=settings.max_revisions_per_poll
        )
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        settings: SqliteSettings | None = None,
        clock: Clock | None = None,
    ) -> AsyncIterator[SqliteStore]:
        """Open (creating if needed) the store in ``path``, and close it on exit."""
        store = cls(
            path=path,
            settings=SqliteSettings() if settings is None else settings,
            clock=SystemClock() if clock is None else clock,
        )
        await store._open()
        try:
            yield store
        finally:
            await store._close()

    @property
    def state(self) -> StoreState:
        return self._state

    @property
    def path(self) -> str:
        return self._path

    @property
    def clock(self) -> Clock:
        return self._clock

    # -- lifecycle -------------------------------------------------------------

    async def _open(self) -> None:
        if self._state is not StoreState.NEW:
            raise RuntimeError(f"cannot open a store that is {self._state.value}")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="meshserve-sqlite"
        )
        loop = asyncio.get_running_loop()
        try:
            self._db = await loop.run_in_executor(
                self._executor,
                lambda: SqliteDb.connect(self._path, busy_timeout=self._settings.busy_timeout),
            )
        except BaseException:
            self._executor.shutdown(wait=False)
            raise
        self._state = StoreState.OPEN
        try:
            # Leases of processes that died while this file was closed end now.
            now = self._clock.time()
            await self._call(lambda db: db.sweep(now))
            await self._hub.pump()
        except BaseException:
            await self._close()
            raise
        self._tasks = [
            _tasks.start_supervised(self._poll(), name=f"sqlite-store-poll:{self._path}"),
            _tasks.start_supervised(self._maintain(), name=f"sqlite-store-maintain:{self._path}"),
        ]

    async def _close(self) -> None:
        if self._state is not StoreState.OPEN:
            return
        for task in self._tasks:
            await _tasks.cancel_and_wait(task)
        self._tasks = []
        self._hub.close()
        db, executor = self._db, self._executor
        self._state = StoreState.CLOSED
        assert db is not None and executor is not None
        loop = asyncio.get_running_loop()
        # Queued behind any SQL still running, so the connection closes idle.
        await loop.run_in_executor(executor, db.close)
        executor.shutdown(wait=False)

    async def _call(self, fn: Callable[[SqliteDb], _T], /) -> _T:
        if self._state is not StoreState.OPEN:
            raise _errors.StoreClosedError(f"the store is {self._state.value}")
        db, executor = self._db, self._executor
        assert db is not None and executor is not None
        return await asyncio.get_running_loop().run_in_executor(executor, fn, db)

    # -- reads -----------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        return await self._call(lambda db: db.get(key))

    async def range(self, prefix: str) -> RangeResult:
        return await self._call(lambda db: db.range(prefix))

    async def current_revision(self) -> int:
        return await self._call(lambda db: db.current_revision())

    # -- writes ----------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: LeaseId | None = None) -> int:
        outcome = await self._txn((), [PutOp(key, value, lease)])
        return outcome.revision

    async def delete(self, key: str) -> bool:
        check_key(key)
        outcome = await self._txn((), [DeleteOp(key)])
        return outcome.deleted[0] > 0

    async def delete_prefix(self, prefix: str) -> int:
        outcome = await self._txn((), [DeletePrefixOp(prefix)])
        return outcome.deleted[0]

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        outcome = await self._txn(compares, ops)
        return TxnResult(succeeded=outcome.succeeded, revision=outcome.revision)

    async def _txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnOutcome:
        check_txn(ops)
        compares, ops = tuple(compares), tuple(ops)
        now = self._clock.time()
        try:
            outcome = await self._call(lambda db: db.txn(compares, ops, now=now))
        finally:
            self._wake.set()
        if outcome.dead_lease is not None:
            raise _errors.LeaseExpiredError(outcome.dead_lease)
        return outcome

    async def compact(self, revision: int) -> None:
        await self._hub.run_caught_up(lambda db: db.compact(revision))

    # -- leases ----------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> LeaseId:
        if ttl <= 0:
            raise ValueError("a lease TTL must be positive")
        now = self._clock.time()
        return await self._call(lambda db: db.grant_lease(ttl, now=now))

    async def keepalive(self, lease: LeaseId) -> None:
        now = self._clock.time()
        try:
            alive = await self._call(lambda db: db.keepalive(lease, now=now))
        finally:
            self._wake.set()
        if not alive:
            raise _errors.LeaseExpiredError(lease)

    async def revoke_lease(self, lease: LeaseId) -> None:
        now = self._clock.time()
        try:
            await self._call(lambda db: db.revoke_lease(lease, now=now))
        finally:
            self._wake.set()

    # -- watch -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, prefix: str, *, start_revision: int | None = None
    ) -> AsyncIterator[WatchStream]:
        if start_revision is not None and start_revision < 1:
            raise ValueError("start_revision must be at least 1")
        if self._state is not StoreState.OPEN:
            raise _errors.StoreClosedError(f"the store is {self._state.value}")
        watch = await self._hub.register(prefix, start_revision=start_revision)
        try:
            yield watch
        finally:
            self._hub.unregister(watch)

    # -- background tasks --------------------------------------------------------

    async def _poll(self) -> None:
        """Feed watches: at once after our own writes, else every poll_interval."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.poll_interval):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._hub.pump()
            except (_errors.StoreUnavailableError, sqlite3.Error) as exc:
                _log.warning("store poll failed, retrying: %s", exc)

    async def _maintain(self) -> None:
        """Sweep expired leases often and compact the event log now and then."""
        loop = asyncio.get_running_loop()
        settings = self._settings
        # Chores are scheduled on the loop's real clock; the injected clock
        # only decides what has expired.
        next_compaction = loop.time() + settings.compaction_interval
        while True:
            await asyncio.sleep(settings.sweep_interval)
            try:
                now = self._clock.time()
                expired = await self._call(functools.partial(SqliteDb.has_expired_leases, now=now))
                if expired:
                    await self._call(functools.partial(SqliteDb.sweep, now=now))
                    self._wake.set()
                if loop.time() >= next_compaction:
                    next_compaction = loop.time() + settings.compaction_interval
                    await self._hub.run_caught_up(
                        functools.partial(
                            SqliteDb.auto_compact,
                            keep_revisions=settings.history_max_revisions,
                            older_than=now - settings.history_max_age,
                        )
                    )
            except (_errors.StoreUnavailableError, sqlite3.Error) as exc:
                _log.warning("store maintenance failed, retrying: %s", exc)
