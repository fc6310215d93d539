"""The mesh's records in the store, mirrored in memory by one watch.

Models and vmodels (shared, written compare-and-swap against the mod
revision the mirror holds), instances and their model copies (each written
only by its own instance, bound to that instance's lease so they vanish with
it), and dynamic config keys. The request path reads only the mirror; writes
are applied to the mirror at once so an instance reads its own writes before
the watch echoes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshserve._ids import InstanceId, ModelId, VModelId
from meshserve.registry._records import (
    CopyRecord,
    InstanceRecord,
    ModelRecord,
    VModelRecord,
    decode_record,
    encode_record,
)
from meshserve.store import CompactedError, EventKind, LeaseId, PutOp, Store, StoreError

__all__ = ["Registry", "Versioned"]

log = logging.getLogger(__name__)

R = TypeVar("R", ModelRecord, VModelRecord, InstanceRecord, CopyRecord)

MODELS_PREFIX = "registry/"
VMODELS_PREFIX = "vmodels/"
INSTANCES_PREFIX = "instances/"
COPIES_PREFIX = "copies/"
CONFIG_PREFIX = "config/"


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
        self.on_put: Callable[[str, R], None] | None = None
        self.on_delete: Callable[[str, R], None] | None = None

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
        if self.on_put is not None:
            self.on_put(name, record)

    def apply_delete(self, name: str, revision: int) -> None:
        current = self.items.get(name)
        if current is not None and current.revision < revision:
            del self.items[name]
            if self.on_delete is not None:
                self.on_delete(name, current.record)
        self._deleted_at[name] = max(revision, self._deleted_at.get(name, 0))

    def clear(self) -> None:
        """Forget everything before a re-list (no callbacks: a re-list is
        not a change)."""
        self.items.clear()
        self._deleted_at.clear()

    async def put(self, name: str, record: R, *, lease: LeaseId | None) -> None:
        """Write unconditionally (records only their owner writes)."""
        data = encode_record(record)
        self.apply_put(name, data, await self._store.put(self.key(name), data, lease=lease))

    async def put_many(self, items: Sequence[tuple[str, R]], *, lease: LeaseId | None) -> None:
        """Write several records unconditionally in one transaction."""
        encoded = [(name, encode_record(record)) for name, record in items]
        ops = [PutOp(self.key(name), data, lease=lease) for name, data in encoded]
        revision = (await self._store.txn((), ops)).revision
        for name, data in encoded:
            self.apply_put(name, data, revision)

    async def remove(self, name: str) -> None:
        if await self._store.delete(self.key(name)):
            self.apply_delete(name, await self._store.current_revision())

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
        self._instances: _Table[InstanceRecord] = _Table(store, INSTANCES_PREFIX, InstanceRecord)
        self._copies: _Table[CopyRecord] = _Table(store, COPIES_PREFIX, CopyRecord)
        self._tables: tuple[
            _Table[ModelRecord]
            | _Table[VModelRecord]
            | _Table[InstanceRecord]
            | _Table[CopyRecord],
            ...,
        ] = (self._models, self._vmodels, self._instances, self._copies)
        self._copies_by_model: dict[str, dict[str, CopyRecord]] = {}
        self._copies.on_put = self._index_copy
        self._copies.on_delete = self._unindex_copy
        self._config: dict[str, str] = {}
        self.model_deleted: list[Callable[[str], None]] = []
        """Called with the id of each model whose record goes away."""
        self._models.on_delete = self._model_gone

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
        # One range at one revision, so the mirror is a consistent snapshot.
        result = await self._store.range("")
        for table in self._tables:
            table.clear()
        self._copies_by_model.clear()
        self._config.clear()
        for kv in result.kvs:
            self._apply(EventKind.PUT, kv.key, kv.value, kv.mod_revision)
        return result.revision

    async def _follow(self, start: int) -> None:
        """Apply store changes to the mirror; re-list after a compaction."""
        prefix = ""
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
        if key.startswith(CONFIG_PREFIX):
            name = key[len(CONFIG_PREFIX) :]
            if kind is EventKind.PUT:
                self._config[name] = value.decode(errors="replace")
            else:
                self._config.pop(name, None)
            return
        for table in self._tables:
            if key.startswith(table.prefix):
                name = key[len(table.prefix) :]
                if kind is EventKind.PUT:
                    table.apply_put(name, value, revision)
                else:
                    table.apply_delete(name, revision)
                return

    @property
    def store(self) -> Store:
        """The store under the registry (for leases and elections)."""
        return self._store

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

    def referencing_vmodels(self, model_id: str) -> list[VModelId]:
        """The vmodels whose active or target model is ``model_id``."""
        return sorted(
            entry.record.vmodel_id
            for entry in self._vmodels.items.values()
            if model_id in (entry.record.active_model_id, entry.record.target_model_id)
        )

    @property
    def instances(self) -> Mapping[str, Versioned[InstanceRecord]]:
        return self._instances.items

    def instance(self, instance_id: str) -> InstanceRecord | None:
        entry = self._instances.items.get(instance_id)
        return entry.record if entry is not None else None

    def copies(self, model_id: str) -> Mapping[str, CopyRecord]:
        """The model's copies (and failed loads), by instance id."""
        return self._copies_by_model.get(model_id, {})

    def copies_on(self, instance_id: str) -> list[CopyRecord]:
        """Every copy record an instance has published."""
        return [
            copy
            for copies in self._copies_by_model.values()
            if (copy := copies.get(instance_id)) is not None
        ]

    def config(self, key: str) -> str | None:
        """A dynamic config value (``config/<key>``), if set."""
        return self._config.get(key)

    def _index_copy(self, name: str, record: CopyRecord) -> None:
        self._copies_by_model.setdefault(record.model_id, {})[record.instance_id] = record

    def _unindex_copy(self, name: str, record: CopyRecord) -> None:
        copies = self._copies_by_model.get(record.model_id)
        if copies is not None:
            copies.pop(record.instance_id, None)
            if not copies:
                del self._copies_by_model[record.model_id]

    def _model_gone(self, name: str, record: ModelRecord) -> None:
        for callback in list(self.model_deleted):
            try:
                callback(name)
            except Exception:
                log.exception("model-deleted callback failed for %s", name)

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

    # -- writes by the owning instance ----------------------------------------

    async def put_instance(self, record: InstanceRecord, *, lease: LeaseId) -> None:
        await self._instances.put(record.instance_id, record, lease=lease)

    async def put_copy(self, record: CopyRecord, *, lease: LeaseId) -> None:
        await self._copies.put(_copy_name(record.model_id, record.instance_id), record, lease=lease)

    async def put_copies(self, records: Sequence[CopyRecord], *, lease: LeaseId) -> None:
        """Write several copy records in one store transaction (distinct
        copies; at most etcd's 128 operations a transaction)."""
        await self._copies.put_many(
            [(_copy_name(r.model_id, r.instance_id), r) for r in records], lease=lease
        )

    async def delete_copy(self, *, model_id: ModelId, instance_id: InstanceId) -> None:
        await self._copies.remove(_copy_name(model_id, instance_id))

    async def set_config(self, key: str, value: str) -> None:
        await self._store.put(CONFIG_PREFIX + key, value.encode())
        self._config[key] = value


def _copy_name(model_id: str, instance_id: str) -> str:
    # The instance id goes last: model ids may contain "/", instance ids not.
    return f"{model_id}/{instance_id}"
