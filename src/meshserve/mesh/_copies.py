"""Copies of models across the mesh: where one is, where a new one goes,
loading one here or on a peer, and moving them away when this instance
drains.

Placement itself (which instance has room) is ``_placement``'s, over the
instances ``MeshView`` lists; this module decides when to place and does
the load (here, or on the chosen peer through its internal port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from meshserve._clock import Clock
from meshserve._ids import InstanceId
from meshserve.errors import (
    MeshServeError,
    ModelNotFoundError,
    PeerUnreachableError,
    UnavailableError,
    quote_client_value,
)
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._instance_state import Lifecycle
from meshserve.mesh._mesh_view import LOADED, SERVING, MeshView
from meshserve.mesh._peers import PeerLink, need_peers
from meshserve.protocol.routing import hop_metadata
from meshserve.registry import InstanceRecord, Registry
from meshserve.runtime import ModelSpec
from meshserve.settings import CacheSettings, MeshSettings

__all__ = ["Copies"]

log = logging.getLogger(__name__)

_RECORD_WAIT_S = 3.0
"""How long a forwarded request waits for this instance to see its model's
registration (the store's watch delivers it within milliseconds normally)."""


class Copies:
    """This instance's view of, and say in, where models are loaded."""

    def __init__(
        self,
        *,
        instance_id: InstanceId,
        registry: Registry,
        cache: ModelCache,
        view: MeshView,
        peers: PeerLink | None,
        lifecycle: Lifecycle,
        clock: Clock,
        cache_settings: CacheSettings,
        mesh_settings: MeshSettings,
    ) -> None:
        self._instance_id = instance_id
        self._registry = registry
        self._cache = cache
        self._view = view
        self._peers = peers
        self._lifecycle = lifecycle
        self._clock = clock
        self._cache_settings = cache_settings
        self._settings = mesh_settings

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    def spec(self, model_id: str) -> ModelSpec:
        """What the runtime loads for a registered model."""
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
        return ModelSpec(
            model_id=model_id, model_type=record.type, model_path=record.path, model_key=record.key
        )

    async def await_record(self, model_id: str) -> None:
        """Wait (briefly) for this mirror to catch up with a registration
        another instance has seen: its watch lags the store by milliseconds."""
        deadline = self._clock.monotonic() + _RECORD_WAIT_S
        while self._registry.model(model_id) is None:
            if self._clock.monotonic() >= deadline:
                raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
            await asyncio.sleep(0.02)

    def last_used_ms(self, model_id: str) -> int:
        """The last use of this instance's copy (0: none here)."""
        entry = self._cache.lru.get(model_id)
        return entry.last_used_ms if entry is not None else 0

    # -- where copies are ------------------------------------------------------

    def here(self, model_id: str) -> bool:
        """This instance holds a copy, loaded or loading."""
        return self._cache.is_loaded(model_id) or self._cache.is_loading(model_id)

    def copy_count(self, model_id: str) -> int:
        """Loaded copies in the mesh, this instance's included."""
        here = 1 if self._cache.is_loaded(model_id) else 0
        return here + len(self._view.remote_copies(model_id, states=LOADED))

    def model_ready(self, model_id: str) -> bool:
        """A copy is loaded somewhere."""
        if self._cache.is_loaded(model_id):
            return True
        return bool(self._view.remote_copies(model_id, states=LOADED))

    def mesh_failure(self, model_id: str) -> MeshServeError | None:
        """The model's unexpired load failure here or on any live instance."""
        local = self._cache.failure(model_id)
        if local is not None:
            return local.error
        return self._view.remote_failure(
            model_id, expiry_s=self._cache_settings.load_failure_expiry_seconds
        )

    def can_place(self, model_id: str) -> bool:
        """Whether some live instance could take a new copy of the model now."""
        record = self._registry.model(model_id)
        return record is not None and self._view.place(record, set()) is not None

    def next_target(
        self, model_id: str, exclude: set[str]
    ) -> tuple[InstanceRecord | None, str | None]:
        """Where to send a request for a model not loaded here: a live copy,
        else a placement (with the chosen instance as ``dest``)."""
        copy = self._view.pick_copy(model_id, exclude)
        if copy is not None:
            return copy, None
        failure = self.mesh_failure(model_id)
        if failure is not None:
            raise failure
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
        target = self._view.place(record, exclude)
        if target is None:
            return None, None
        dest = None if target.instance_id == self._instance_id else target.instance_id
        return target, dest

    def note_placement(self, instance_id: str, model_id: str) -> None:
        """Count a copy just placed on ``instance_id`` until its record shows it."""
        entry = self._cache.lru.get(model_id)
        self._view.note_placement(
            instance_id, entry.size_bytes if entry is not None else self._cache.default_size
        )

    # -- loading copies --------------------------------------------------------

    def holders(self, model_id: str) -> set[str]:
        """Instances with a copy loaded or loading (this one while it leaves)."""
        holders: set[str] = {
            c.instance_id for c in self._view.remote_copies(model_id, states=SERVING)
        }
        if self.here(model_id) or self._lifecycle.leaving:
            holders.add(self._instance_id)
        return holders

    async def add_copy(
        self, model_id: str, *, sync: bool = False, target: InstanceRecord | None = None
    ) -> bool:
        """Load one more copy of a model on ``target``, or on the best
        instance without one."""
        record = self._registry.model(model_id)
        if record is None:
            return False
        holders = self.holders(model_id)
        if target is None:
            target = self._view.place(record, holders)
        if target is None or target.instance_id in holders:
            return False
        await self._load_on(target, model_id, sync=sync, last_used_ms=self._now_ms())
        return True

    async def _load_on(
        self, target: InstanceRecord, model_id: str, *, sync: bool, last_used_ms: int
    ) -> None:
        if target.instance_id == self._instance_id:
            await self._load_locally(model_id, sync=sync, last_used_ms=last_used_ms)
            return
        self.note_placement(target.instance_id, model_id)
        metadata = hop_metadata(
            model_id=model_id, hops=1, exclude=(self._instance_id,), dest=target.instance_id
        )
        try:
            await need_peers(self._peers).ensure_loaded(
                target.address, model_id, metadata, sync=sync, last_used_ms=last_used_ms
            )
        except PeerUnreachableError:
            self._view.mark_unreachable(target.instance_id)
            raise

    async def ensure_available(self, model_id: str, *, sync: bool, last_used_ms: int = 0) -> None:
        """Make sure a copy is loaded (or loading) somewhere; load one where
        placement says if none is. With ``sync``, wait for it."""
        used = last_used_ms or self._now_ms()
        exclude: set[str] = set()
        reasons: list[str] = []
        for _ in range(self._settings.max_attempts):
            if self.here(model_id):
                self._cache.lru.touch(model_id, used)
                if sync:
                    await self._cache.ensure_loaded(self.spec(model_id), last_used_ms=used)
                return
            if self._view.remote_copies(model_id, states=LOADED):
                return
            target, _ = self.next_target(model_id, exclude)
            if target is None:
                break
            try:
                await self._load_on(target, model_id, sync=sync, last_used_ms=used)
                return
            except UnavailableError as exc:
                reasons.append(f"{target.instance_id}: {exc}")
                exclude.add(target.instance_id)
        detail = "; ".join(reasons) if reasons else "no instance can take it"
        raise UnavailableError(
            f"model {quote_client_value(model_id)} cannot be loaded now: {detail}"
        )

    async def load_here(self, model_id: str, *, sync: bool, last_used_ms: int = 0) -> None:
        """Load this instance's own copy (another instance placed it here)."""
        await self.await_record(model_id)
        if self._lifecycle.draining:
            raise UnavailableError(f"instance {self._instance_id} is shutting down")
        used = last_used_ms or self._now_ms()
        self._cache.lru.touch(model_id, used)
        await self._load_locally(model_id, sync=sync, last_used_ms=used)

    async def _load_locally(self, model_id: str, *, sync: bool, last_used_ms: int) -> None:
        """Start loading this instance's copy; with ``sync``, wait for it
        (a waiter leaving does not cancel the load others may share)."""
        future = self._cache.start_load(self.spec(model_id), last_used_ms=last_used_ms)
        if sync:
            await asyncio.shield(future)

    async def reload_lost(self) -> None:
        """The runtime came back empty: reload what was loaded, most recently
        used first (ModelMesh's order after losing copies)."""
        lost = self._cache.forget_all()
        if not self._cache_settings.reload_after_restart:
            return
        for model_id in lost:
            if self._registry.model(model_id) is None:
                continue
            with contextlib.suppress(MeshServeError):
                await self._cache.ensure_loaded(self.spec(model_id), last_used_ms=self._now_ms())

    # -- rejoining --------------------------------------------------------------

    async def trim_after_rejoin(self) -> None:
        """This instance lost its lease (it hung, or was cut off from the
        store) and joined again: meanwhile the mesh reloaded its models
        elsewhere. Drop the copies here that a newer loaded copy elsewhere
        replaces, so none is left twice; the others stay. Checked for a lease
        TTL, as this instance's mirror catches up with what changed."""
        until = self._clock.monotonic() + self._settings.lease_ttl_s
        while True:
            await self.drop_replaced()
            if self._clock.monotonic() >= until:
                return
            await asyncio.sleep(self._settings.publish_interval_s)

    async def drop_replaced(self) -> list[str]:
        """Drop the copies here (not in use) that another live instance has
        loaded more recently; the ids dropped. Only the older copy of a pair
        goes, so two instances never drop each other's."""
        dropped = []
        for model_id in self._cache.loaded_ids():
            entry = self._cache.lru.get(model_id)
            if entry is None or entry.inflight:
                continue
            mine = (entry.loaded_at_ms, self._instance_id)
            others = self._view.copies(model_id, states=LOADED)
            if not any(
                (c.time_ms, c.instance_id) > mine
                for c in others
                if c.instance_id != self._instance_id
            ):
                continue
            log.info(
                "%s was loaded elsewhere while this instance was away: dropping it here", model_id
            )
            await self._cache.evict(entry)
            dropped.append(model_id)
        return dropped

    # -- leaving ---------------------------------------------------------------

    async def move_recent_elsewhere(self) -> None:
        """Have the models used here within ``drain_recent_s``, and loaded on
        no other serving instance, loaded elsewhere (within
        ``drain_deadline_s``)."""
        recent_ms = self._now_ms() - int(self._settings.drain_recent_s * 1000)
        movers = [
            model_id
            for model_id in self._cache.loaded_ids()
            if self.last_used_ms(model_id) >= recent_ms
            and self._registry.model(model_id) is not None
            and not any(
                not self._view.is_draining(c.instance_id)
                for c in self._view.remote_copies(model_id, states=LOADED)
            )
        ]
        if not movers:
            return
        others = [
            r
            for r in self._view.live_instances()
            if r.instance_id != self._instance_id and not r.shutting_down
        ]
        if not others:
            log.info("drained: %d model(s) not moved: no other instance to take them", len(movers))
            return
        log.info("draining: loading %d model(s) elsewhere", len(movers))

        async def move(model_id: str) -> bool:
            """Whether a copy now loads elsewhere (False: no instance took it)."""
            try:
                return await self.add_copy(model_id, sync=True)
            except MeshServeError:
                return False

        tasks = [asyncio.ensure_future(move(m)) for m in movers]
        done, pending = await asyncio.wait(tasks, timeout=self._settings.drain_deadline_s)
        for task in pending:
            task.cancel()
        moved = sum(1 for task in done if task.result())
        log.info(
            "drained: %d moved, %d not moved (no room or failed), %d not in time",
            moved,
            len(done) - moved,
            len(pending),
        )
