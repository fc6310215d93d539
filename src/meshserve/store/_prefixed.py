"""A view of a store under a root prefix (ModelMesh's ``root_prefix``)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence

from meshserve._clock import Clock
from meshserve.store._store import Store
from meshserve.store._types import (
    Compare,
    DeleteOp,
    DeletePrefixOp,
    Event,
    KeyValue,
    LeaseId,
    Op,
    PutOp,
    RangeResult,
    TxnResult,
    WatchStream,
    check_key,
)

__all__ = ["PrefixedStore"]


class PrefixedStore(Store):
    """``store`` seen through ``root``: keys are written as ``root + key``.

    Callers never see the root, so two meshes sharing one store (with
    different roots) never see each other's keys. Revisions, leases and
    compaction stay store-wide, as with etcd's namespace client. The view
    owns nothing: opening and closing stay with the wrapped store.
    """

    def __init__(self, store: Store, root: str) -> None:
        if not root:
            raise ValueError("a root prefix must not be empty")
        self._store = store
        self._root = root

    @property
    def root(self) -> str:
        return self._root

    @property
    def clock(self) -> Clock:
        return self._store.clock

    def _strip(self, kv: KeyValue) -> KeyValue:
        return dataclasses.replace(kv, key=kv.key[len(self._root) :])

    def _strip_event(self, event: Event) -> Event:
        prev = None if event.prev is None else self._strip(event.prev)
        return Event(kind=event.kind, kv=self._strip(event.kv), prev=prev)

    def _op(self, op: Op) -> Op:
        if isinstance(op, PutOp):
            check_key(op.key)
            return PutOp(self._root + op.key, op.value, op.lease)
        if isinstance(op, DeleteOp):
            return DeleteOp(self._root + op.key)
        return DeletePrefixOp(self._root + op.prefix)

    async def get(self, key: str) -> KeyValue | None:
        check_key(key)
        kv = await self._store.get(self._root + key)
        return None if kv is None else self._strip(kv)

    async def range(self, prefix: str) -> RangeResult:
        result = await self._store.range(self._root + prefix)
        kvs = tuple(self._strip(kv) for kv in result.kvs)
        return RangeResult(kvs=kvs, revision=result.revision)

    async def current_revision(self) -> int:
        return await self._store.current_revision()

    async def put(self, key: str, value: bytes, *, lease: LeaseId | None = None) -> int:
        check_key(key)
        return await self._store.put(self._root + key, value, lease=lease)

    async def delete(self, key: str) -> bool:
        check_key(key)
        return await self._store.delete(self._root + key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._store.delete_prefix(self._root + prefix)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        return await self._store.txn(
            [Compare(key=self._root + c.key, mod_revision=c.mod_revision) for c in compares],
            [self._op(op) for op in ops],
        )

    async def compact(self, revision: int) -> None:
        await self._store.compact(revision)

    async def grant_lease(self, ttl: float) -> LeaseId:
        return await self._store.grant_lease(ttl)

    async def keepalive(self, lease: LeaseId) -> None:
        await self._store.keepalive(lease)

    async def revoke_lease(self, lease: LeaseId) -> None:
        await self._store.revoke_lease(lease)

    @contextlib.asynccontextmanager
    async def watch(
        self, prefix: str, *, start_revision: int | None = None
    ) -> AsyncIterator[WatchStream]:
        async with self._store.watch(self._root + prefix, start_revision=start_revision) as inner:
            yield _StrippedStream(inner, self)


class _StrippedStream:
    def __init__(self, inner: WatchStream, view: PrefixedStore) -> None:
        self._inner = inner
        self._view = view

    def __aiter__(self) -> _StrippedStream:
        return self

    async def __anext__(self) -> tuple[Event, ...]:
        batch = await self._inner.__anext__()
        return tuple(self._view._strip_event(e) for e in batch)
