"""The stream one ``EtcdStore.watch`` yields, fed by a task that reads etcd."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

from meshserve import errors
from meshserve.store import _errors
from meshserve.store._types import Event

__all__ = ["EtcdWatch"]


class EtcdWatch:
    """Batches of one watch, in revision order, each revision whole.

    ``next_revision`` is the first revision not yet delivered: the store's
    pump resumes from it when etcd's stream breaks, and drops anything older
    that a resumed stream repeats.
    """

    def __init__(self, *, prefix: str, next_revision: int) -> None:
        self.prefix = prefix
        self.next_revision = next_revision
        self.stream: AsyncIterator[Any] | None = None
        """The etcd3aio response stream being read (closed by the store)."""
        self._queue: asyncio.Queue[tuple[Event, ...] | Exception] = asyncio.Queue()
        self._error: Exception | None = None

    def __aiter__(self) -> EtcdWatch:
        return self

    async def __anext__(self) -> tuple[Event, ...]:
        if self._error is not None:
            raise self._error
        item = await self._queue.get()
        if isinstance(item, Exception):
            self._error = item
            raise item
        return item

    def deliver(self, events: tuple[Event, ...]) -> None:
        """Queue the events not delivered yet; ``events`` are in revision order.

        One batch per revision: etcd hands a watch that catches up many
        revisions at once, and a reader asking for the next few changes
        should not be given more than it asked for along with them.
        """
        fresh = [e for e in events if e.revision >= self.next_revision]
        for _, group in itertools.groupby(fresh, key=lambda e: e.revision):
            self._queue.put_nowait(tuple(group))
        if fresh:
            self.next_revision = fresh[-1].revision + 1

    def caught_up(self, revision: int) -> None:
        """etcd says every event up to ``revision`` was sent (a progress notice)."""
        self.next_revision = max(self.next_revision, revision + 1)

    def fail(self, error: _errors.StoreError | errors.UnavailableError) -> None:
        """End the stream with ``error`` once the queued batches are read."""
        self._queue.put_nowait(error)
