"""An instance's presence in the store: its lease, record and copies.

Everything it publishes is bound to one lease, so an instance that dies
(SIGKILL, a lost machine) disappears from every other instance's mirror
when the lease expires. Publishing never blocks a request: changes are
queued and written by one task, in order, coalesced per model. If the lease
is lost (the store says it expired: this process stalled, or was cut off
from the store for a whole TTL), a new one is granted and everything is
written again. Whether the store answers is reported to ``StoreContact``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable

from meshserve import _tasks
from meshserve._ids import InstanceId, ModelId
from meshserve.errors import MeshServeError, UnavailableError
from meshserve.mesh._store_contact import StoreContact
from meshserve.registry import CopyRecord, InstanceRecord, Registry
from meshserve.store import KeptLease, Store

__all__ = ["Membership"]

log = logging.getLogger(__name__)

_RETRY_S = 0.5
_COPIES_PER_TXN = 64
"""Copy records written in one store transaction: loading thousands of
models wrote one transaction per copy change (etcd allows 128 operations)."""


class Membership:
    """Publishes one instance's record and copy records under its lease."""

    def __init__(
        self,
        *,
        store: Store,
        registry: Registry,
        instance_id: InstanceId,
        lease_ttl_s: float,
        publish_interval_s: float,
        describe: Callable[[], InstanceRecord],
        current_copies: Callable[[], list[CopyRecord]],
        contact: StoreContact,
        on_rejoin: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_rejoin``: called when a lost lease was replaced and every
        record written again (the mesh may have moved on meanwhile)."""
        self._store = store
        self._contact = contact
        self._registry = registry
        self.instance_id = instance_id
        self._ttl = lease_ttl_s
        self._interval = publish_interval_s
        self._describe = describe
        self._current_copies = current_copies
        self._on_rejoin = on_rejoin
        # model id -> the copy to write, or None to delete it.
        self._pending: dict[str, CopyRecord | None] = {}
        self._wake = asyncio.Event()
        self._published: InstanceRecord | None = None
        self._lease: KeptLease | None = None
        self._joined = asyncio.Event()
        self._leaving = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Join the mesh (returns once the first publication is written) and
        keep the records alive; leaving the block revokes the lease."""
        task = _tasks.start_supervised(self._run(), name="membership")
        try:
            await self._joined.wait()
            yield
        finally:
            self._leaving = True
            await _tasks.cancel_and_wait(task)

    @property
    def joined(self) -> bool:
        return self._lease is not None and self._lease.is_alive

    def copy_changed(self, model_id: str, copy: CopyRecord | None) -> None:
        """Queue a copy's new state (None: it is gone)."""
        self._pending[model_id] = copy
        self._wake.set()

    def poke(self) -> None:
        """Publish the instance record soon (something operators see changed)."""
        self._wake.set()

    async def publish_now(self) -> None:
        """Write the instance record now (e.g. shutting down)."""
        if self._lease is not None and self._lease.is_alive:
            await self._publish_instance(self._lease, force=True)

    async def leave(self) -> None:
        """Leave the mesh now: revoke the lease, so every record goes at once."""
        self._leaving = True
        lease, self._lease = self._lease, None
        if lease is not None:
            # Through the lease, so that its keeper knows the loss is ours.
            await lease.revoke()

    async def _run(self) -> None:
        while not self._leaving:
            try:
                async with self._store.lease(self._ttl) as lease:
                    self._lease = lease
                    lease.on_contact = self._contact.note
                    await self._publish_all(lease)
                    self._contact.regained()
                    if self._joined.is_set():
                        self._on_rejoin()
                    self._joined.set()
                    log.info("joined the mesh as %s (lease %#x)", self.instance_id, lease.id)
                    await self._follow(lease)
                    if not self._leaving:
                        log.warning("lease lost; joining the mesh again")
            except MeshServeError as exc:
                if isinstance(exc, UnavailableError):
                    self._contact.lost()
                log.warning("cannot publish to the store (%s); retrying", exc)
                await asyncio.sleep(_RETRY_S)

    async def _publish_all(self, lease: KeptLease) -> None:
        self._pending.clear()
        self._published = None
        await self._publish_instance(lease, force=True)
        copies = self._current_copies()
        for start in range(0, len(copies), _COPIES_PER_TXN):
            await self._registry.put_copies(copies[start : start + _COPIES_PER_TXN], lease=lease.id)

    async def _follow(self, lease: KeptLease) -> None:
        lost = asyncio.ensure_future(lease.wait_lost())
        try:
            while lease.is_alive and not self._leaving:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                try:
                    await self._flush_copies(lease)
                    await self._publish_instance(lease, force=False)
                except MeshServeError as exc:
                    # The store is unreachable for now; the lease may outlive it.
                    if isinstance(exc, UnavailableError):
                        self._contact.lost()
                    log.info("publishing to the store failed (%s); retrying", exc)
                    await asyncio.sleep(_RETRY_S)
                    self._wake.set()
        finally:
            lost.cancel()

    async def _flush_copies(self, lease: KeptLease) -> None:
        """Write the queued copy changes: the puts of up to
        ``_COPIES_PER_TXN`` at a time in one transaction, deletes one by one."""
        while self._pending:
            batch = list(itertools.islice(self._pending.items(), _COPIES_PER_TXN))
            for model_id, copy in batch:
                if copy is None:
                    await self._registry.delete_copy(
                        model_id=ModelId(model_id), instance_id=self.instance_id
                    )
            puts = [copy for _, copy in batch if copy is not None]
            if puts:
                await self._registry.put_copies(puts, lease=lease.id)
            for model_id, copy in batch:
                # Only drop it if no newer change arrived while writing.
                if self._pending.get(model_id, copy) is copy:
                    self._pending.pop(model_id, None)

    async def _publish_instance(self, lease: KeptLease, *, force: bool) -> None:
        record = self._describe()
        if not force and record == self._published:
            return
        await self._registry.put_instance(record, lease=lease.id)
        self._published = record
