"""The coordination store interface (etcd's semantics, any backend)."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Sequence

from meshserve._clock import Clock
from meshserve.store import _lease
from meshserve.store._lease import KeptLease
from meshserve.store._types import (
    Compare,
    DeleteOp,
    KeyValue,
    LeaseId,
    Op,
    PutOp,
    RangeResult,
    TxnResult,
    WatchStream,
)

__all__ = ["Store"]


class Store(abc.ABC):
    """A small key-value store with revisions, leases, watches and CAS.

    The semantics are etcd v3's, so that the embedded SQLite backend and the
    etcd backend are interchangeable (``tests/unit/store/store_contract.py`` is the
    contract both pass):

    - one store-wide revision, bumped once per call that changes something
      (deleting a missing key changes nothing and bumps nothing);
    - keys are non-empty strings, compared and sorted as UTF-8 bytes; a
      "prefix" selects every key that starts with it ("" selects all);
    - a key put with a lease is deleted when the lease expires or is revoked
      (one revision per lease, DELETE events with ``prev``); a put without a
      lease detaches the key from any lease it had;
    - TTLs are a floor, not exact: a backend may round them up (etcd: whole
      seconds, at least ~2 s) and may delete keys a little after expiry;
    - watches see every change in revision order, without gaps, and resume
      from any revision still in history.

    Backends are opened and closed explicitly by an async context manager of
    their own (e.g. ``SqliteStore.open``); using a closed store raises
    ``StoreClosedError``.
    """

    @property
    @abc.abstractmethod
    def clock(self) -> Clock:
        """The clock this store measures leases with."""

    # -- reads ---------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, key: str) -> KeyValue | None:
        """The key's current value, or None if it does not exist."""

    @abc.abstractmethod
    async def range(self, prefix: str) -> RangeResult:
        """Every key starting with ``prefix``, sorted, with the revision read at."""

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The store's revision now (0 for a store never written to)."""

    # -- writes --------------------------------------------------------------

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, *, lease: LeaseId | None = None) -> int:
        """Set ``key``; return the new revision.

        Raises LeaseExpiredError if ``lease`` is not alive.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> bool:
        """Delete ``key``; False if it did not exist."""

    @abc.abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (one revision); return how many."""

    @abc.abstractmethod
    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """Apply every op, under one revision, if every compare holds; else nothing.

        Ops must not overlap a put (etcd's rule; ``ValueError`` otherwise).
        Raises LeaseExpiredError if a put names a lease that is not alive.
        """

    async def put_if(
        self,
        key: str,
        value: bytes,
        *,
        expected_mod_revision: int,
        lease: LeaseId | None = None,
    ) -> int | None:
        """Compare-and-swap: put if ``key``'s mod_revision is as expected.

        ``expected_mod_revision=0`` means "only if absent". Returns the new
        revision (which is then the key's mod_revision, ready for the next
        swap), or None if someone else changed the key first.
        """
        result = await self.txn(
            [Compare(key=key, mod_revision=expected_mod_revision)],
            [PutOp(key, value, lease)],
        )
        return result.revision if result.succeeded else None

    async def delete_if(self, key: str, *, expected_mod_revision: int) -> bool:
        """Delete ``key`` only if its mod_revision is as expected (and non-zero)."""
        if expected_mod_revision <= 0:
            raise ValueError("delete_if needs the mod_revision of an existing key")
        result = await self.txn(
            [Compare(key=key, mod_revision=expected_mod_revision)], [DeleteOp(key)]
        )
        return result.succeeded

    @abc.abstractmethod
    async def compact(self, revision: int) -> None:
        """Drop watch history up to and including ``revision``.

        Watches from ``revision`` or earlier then raise CompactedError.
        ``ValueError`` if ``revision`` is in the future.
        """

    # -- leases --------------------------------------------------------------

    @abc.abstractmethod
    async def grant_lease(self, ttl: float) -> LeaseId:
        """Grant a lease that expires ``ttl`` seconds from now unless refreshed."""

    @abc.abstractmethod
    async def keepalive(self, lease: LeaseId) -> None:
        """Refresh ``lease`` once (to a full TTL).

        Raises LeaseExpiredError if it has already expired or was revoked.
        """

    @abc.abstractmethod
    async def revoke_lease(self, lease: LeaseId) -> None:
        """End ``lease`` now, deleting its keys. A lease already gone is a no-op."""

    @contextlib.asynccontextmanager
    async def lease(
        self, ttl: float, *, refresh_interval: float | None = None
    ) -> AsyncIterator[KeptLease]:
        """Grant a lease and keep it alive until the block exits, then revoke it.

        It is refreshed every ``refresh_interval`` seconds (default ttl / 3) by
        a task this context manager owns. If the store says it is lost anyway
        (the process stalled, or this process alone was cut off from the store
        for a whole TTL), ``state`` becomes LOST and ``wait_lost()`` returns;
        the block itself is not interrupted. An unreachable store loses no
        lease by itself: the keeper keeps trying until the store answers.
        """
        async with _lease.keep_lease(self, ttl=ttl, refresh_interval=refresh_interval) as kept:
            yield kept

    # -- watch ---------------------------------------------------------------

    @abc.abstractmethod
    def watch(
        self, prefix: str, *, start_revision: int | None = None
    ) -> contextlib.AbstractAsyncContextManager[WatchStream]:
        """Watch every key starting with ``prefix``.

        Use as ``async with store.watch(p) as events: async for batch in events``.
        Without ``start_revision`` the watch sees changes made after it was
        created; with it, it first replays history from that revision (to
        resume after ``range`` or a reconnect without a gap), raising
        CompactedError if that history is gone. A watch ends with
        StoreClosedError when its store closes, and may end with
        CompactedError if it falls behind compaction.
        """
