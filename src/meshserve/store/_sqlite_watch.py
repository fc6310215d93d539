"""Fan-out of the SQLite event log to the watches of one store object.

One hub per store reads the log (``SqliteDb.read_events``) after the last
revision it delivered, whenever the store's poll loop asks, and hands each
watch the events under its prefix. Registering a watch and delivering events
take the same lock, so a watch that replays history up to the hub's position
and then receives live events from the next revision sees each event once.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from meshserve.store import _errors
from meshserve.store._sqlite_db import SqliteDb
from meshserve.store._types import Event

__all__ = ["SqliteWatch", "WatchHub"]

_T = TypeVar("_T")


class Caller(Protocol):
    """Runs a function with the database on the store's executor thread."""

    def __call__(self, fn: Callable[[SqliteDb], _T], /) -> Awaitable[_T]: ...


class SqliteWatch:
    """The stream one ``SqliteStore.watch`` yields."""

    def __init__(self, *, prefix: str, next_revision: int) -> None:
        self.prefix = prefix
        self.next_revision = next_revision
        """The first revision this watch has not yet been given."""
        self._queue: asyncio.Queue[tuple[Event, ...] | _errors.StoreError] = asyncio.Queue()
        self._error: _errors.StoreError | None = None

    def __aiter__(self) -> SqliteWatch:
        return self

    async def __anext__(self) -> tuple[Event, ...]:
        if self._error is not None:
            raise self._error
        item = await self._queue.get()
        if isinstance(item, _errors.StoreError):
            self._error = item
            raise item
        return item

    def deliver(self, events: tuple[Event, ...], *, upto: int) -> None:
        batch = tuple(
            e
            for e in events
            if e.revision >= self.next_revision and e.kv.key.startswith(self.prefix)
        )
        if batch:
            self._queue.put_nowait(batch)
        self.next_revision = max(self.next_revision, upto + 1)

    def fail(self, error: _errors.StoreError) -> None:
        self._queue.put_nowait(error)


class WatchHub:
    def __init__(self, *, call: Caller, max_revisions_per_poll: int) -> None:
        self._call = call
        self._max_revisions = max_revisions_per_poll
        self._watches: set[SqliteWatch] = set()
        self._lock = asyncio.Lock()
        self._position = 0
        """Every event up to this revision has been delivered."""

    async def register(self, prefix: str, *, start_revision: int | None) -> SqliteWatch:
        async with self._lock:
            position = self._position
            if start_revision is None:
                current = await self._call(lambda db: db.current_revision())
                watch = SqliteWatch(prefix=prefix, next_revision=current + 1)
            else:
                page = await self._call(
                    lambda db: db.replay(prefix, start=start_revision, upto=position)
                )
                if start_revision <= page.compact_revision:
                    raise _errors.CompactedError(
                        requested_revision=start_revision,
                        compact_revision=page.compact_revision,
                    )
                watch = SqliteWatch(prefix=prefix, next_revision=start_revision)
                watch.deliver(page.events, upto=position)
            self._watches.add(watch)
            return watch

    def unregister(self, watch: SqliteWatch) -> None:
        self._watches.discard(watch)

    async def pump(self) -> None:
        """Deliver every event written since the last pump."""
        async with self._lock:
            await self._pump()

    async def run_caught_up(self, fn: Callable[[SqliteDb], object]) -> None:
        """Deliver what is pending, then run ``fn`` before anything new is read.

        Compaction uses this so that it never drops events this store's own
        watches have not been given yet.
        """
        async with self._lock:
            await self._pump()
            await self._call(fn)

    def close(self) -> None:
        for watch in self._watches:
            watch.fail(_errors.StoreClosedError("the store was closed"))
        self._watches.clear()

    async def _pump(self) -> None:
        if not self._watches:
            self._position = await self._call(lambda db: db.current_revision())
            return
        while True:
            page = await self._call(
                functools.partial(
                    SqliteDb.read_events, after=self._position, max_revisions=self._max_revisions
                )
            )
            if page.compact_revision > self._position:
                # Another process compacted history we had not read yet; only
                # watches that still needed it are broken.
                for watch in [w for w in self._watches if w.next_revision <= page.compact_revision]:
                    watch.fail(
                        _errors.CompactedError(
                            requested_revision=watch.next_revision,
                            compact_revision=page.compact_revision,
                        )
                    )
                    self._watches.discard(watch)
            for watch in self._watches:
                watch.deliver(page.events, upto=page.upto)
            self._position = page.upto
            if page.upto >= page.current_revision:
                return
