"""Model and vmodel records in the store, mirrored in memory by a watch.

The request path reads only the mirror; writes are compare-and-swap against
the mod revision the mirror holds, and are applied to the mirror at once so
an instance reads its own writes before the watch echoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshserve.registry._records import ModelRecord, VModelRecord, decode_record, encode_record
from meshserve.store import CompactedError, EventKind, Store, StoreError

__all__ = ["Registry", "Versioned"]

log = logging.getLogger(__name__)

R = TypeVar("R", ModelRecord, VModelRecord)

MODELS_PREFIX = "registry/"
VMODELS_PREFIX = "vmodels/"


@dataclass(frozen=True, slots=True)
class Versioned(Generic[R]):
    record: R
    revision: int
    """The key's mod revision: what a compare-and-swap must match."""


class _Table(Generic[R]):
    """One prefix of the store and its in-memory mirror."""

    def __init__(self, store: Store, prefix: str, cls: type[R]) -> None:
        self._store = store
        self.prefix = prefix
        self._cls: type[R] = cls
        self.items: dict[str, Versioned[R]] = {}
        # Deletions we have seen, so a late PUT event cannot resurrect a key.
        self._deleted_at: dict[str, int] = {}

    def key(self, name: str) -> str:
        return self.prefix + name

    def apply_put(self, name: str, data: bytes, revision: int) -> None:
        current = self.items.get(name)
        if current is not None and current.revision >= revision:
            return
        if self._deleted_at.get(name, 0) >= revision:
            return
        try:
            record = decode_record(self._cls, data)
        except Exception:
            log.exception("ignoring undecodable record %s%s", self.prefix, name)
            return
        self.items[name] = Versioned(record, revision)

    def apply_delete(self, name: str, revision: int) -> None:
        current = self.items.get(name)
        if current is not None and current.revision < revision:
            del self.items[name]
        self._deleted_at[name] = max(revision, self._deleted_at.get(name, 0))

    async def create(self, name: str, record: R) -> bool:
        data = encode_record(record)
        revision = await self._store.put_if(self.key(name), data, expected_mod_revision=0)
        if revision is None:
            return False
        self.apply_put(name, data, revision)
        return True

    async def update(self, name: str, record: R, *, expected_revision: int) -> bool:
        data = encode_record(record)
        revision = await self._store.put_if(
            self.key(name), data, expected_mod_revision=expected_revision
        )
        if revision is None:
            return False
        self.apply_put(name, data, revision)
        return True

    async def delete(self, name: str, *, expected_revision: int) -> bool:
        deleted = await self._store.delete_if(
            self.key(name), expected_mod_revision=expected_revision
        )
        if deleted:
            # The delete's own revision is unknown here; the current one is
            # at least as new, which is all apply_delete needs.
            self.apply_delete(name, await self._store.current_revision())
        return deleted


class Registry:
    """Registered models and vmodels of one mesh."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._models: _Table[ModelRecord] = _Table(store, MODELS_PREFIX, ModelRecord)
        self._vmodels: _Table[VModelRecord] = _Table(store, VMODELS_PREFIX, VModelRecord)
        self._tables: tuple[_Table[ModelRecord] | _Table[VModelRecord], ...] = (
            self._models,
            self._vmodels,
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, store: Store) -> AsyncIterator[Registry]:
        registry = cls(store)
        revision = await registry._load()
        task = asyncio.create_task(registry._follow(revision + 1), name="registry-watch")
        try:
            yield registry
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _load(self) -> int:
        revision = 0
        for table in self._tables:
            table.items.clear()
            result = await self._store.range(table.prefix)
            for kv in result.kvs:
                table.apply_put(kv.key[len(table.prefix) :], kv.value, kv.mod_revision)
            revision = max(revision, result.revision)
        return revision

    async def _follow(self, start: int) -> None:
        """Apply store changes to the mirror; re-list after a compaction."""
        prefix = _common_prefix(self._models.prefix, self._vmodels.prefix)
        while True:
            try:
                async with self._store.watch(prefix, start_revision=start) as events:
                    async for batch in events:
                        for event in batch:
                            self._apply(event.kind, event.kv.key, event.kv.value, event.revision)
                            start = event.revision + 1
            except CompactedError:
                log.warning("registry watch fell behind compaction; re-listing")
                start = await self._load() + 1
            except StoreError as exc:
                log.warning("registry watch ended (%s); resuming from revision %d", exc, start)
                await asyncio.sleep(0.5)

    def _apply(self, kind: EventKind, key: str, value: bytes, revision: int) -> None:
        for table in self._tables:
            if key.startswith(table.prefix):
                name = key[len(table.prefix) :]
                if kind is EventKind.PUT:
                    table.apply_put(name, value, revision)
                else:
                    table.apply_delete(name, revision)
                return

    # -- reads (mirror only) -------------------------------------------------

    @property
    def models(self) -> Mapping[str, Versioned[ModelRecord]]:
        return self._models.items

    @property
    def vmodels(self) -> Mapping[str, Versioned[VModelRecord]]:
        return self._vmodels.items

    def model(self, model_id: str) -> ModelRecord | None:
        entry = self._models.items.get(model_id)
        return entry.record if entry is not None else None

    def vmodel(self, vmodel_id: str) -> VModelRecord | None:
        entry = self._vmodels.items.get(vmodel_id)
        return entry.record if entry is not None else None

    def referencing_vmodels(self, model_id: str) -> list[str]:
        """The vmodels whose active or target model is ``model_id``."""
        return sorted(
            name
            for name, entry in self._vmodels.items.items()
            if model_id in (entry.record.active_model_id, entry.record.target_model_id)
        )

    # -- writes (compare-and-swap) -------------------------------------------

    async def create_model(self, record: ModelRecord) -> bool:
        """Create a model record; False if one exists already."""
        return await self._models.create(record.model_id, record)

    async def update_model(self, record: ModelRecord, *, expected_revision: int) -> bool:
        return await self._models.update(
            record.model_id, record, expected_revision=expected_revision
        )

    async def delete_model(self, model_id: str, *, expected_revision: int) -> bool:
        return await self._models.delete(model_id, expected_revision=expected_revision)

    async def create_vmodel(self, record: VModelRecord) -> bool:
        return await self._vmodels.create(record.vmodel_id, record)

    async def update_vmodel(self, record: VModelRecord, *, expected_revision: int) -> bool:
        return await self._vmodels.update(
            record.vmodel_id, record, expected_revision=expected_revision
        )

    async def delete_vmodel(self, vmodel_id: str, *, expected_revision: int) -> bool:
        return await self._vmodels.delete(vmodel_id, expected_revision=expected_revision)


def _common_prefix(a: str, b: str) -> str:
    length = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        length += 1
    return a[:length]
