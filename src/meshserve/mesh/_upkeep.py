"""An instance's periodic work: rates and copies, the janitor, the reaper.

- Every ``rate_check_interval_s``: a copy serving more than
  ``scaleup_rpm_threshold`` requests per minute gets another copy elsewhere;
  when the mesh is short of space, cold extra copies go (the newest copy of
  a model removes itself, so two instances never remove the same model's
  last copies at once); a busy instance gives a copy of its hottest model
  to an underused one (``_rebalance``: load spreads onto restarted or new
  instances); the leader retries vmodel transitions.
- While the store is out of reach, and for ``store_outage_grace_s`` after,
  nothing that judges peers gone runs (the reaper, orphan deletion) and no
  copies are added or removed on the strength of the view: it is the last
  known one.
- Every ``janitor_interval_s``: the cache is reconciled with the registry
  (unregistered models unloaded, expired failures dropped, published copies
  rewritten if they drifted).
- Every ``last_use_publish_interval_s``: the last use of the models loaded
  here goes into their records, when a minute or more newer.
- Every ``reaper_interval_s``, on the leader only: models that lost their
  last copy (their instance died) are loaded again, most recently used
  first; copy records of instances that are gone are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from meshserve import _tasks
from meshserve._clock import Clock
from meshserve._ids import InstanceId, ModelId
from meshserve.errors import MeshServeError
from meshserve.mesh._background import Spawn
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._copies import Copies
from meshserve.mesh._lru import CacheEntry
from meshserve.mesh._membership import Membership
from meshserve.mesh._mesh_view import LOADED, MeshView
from meshserve.mesh._own_records import OwnRecords, copy_state
from meshserve.mesh._placement import required_label
from meshserve.mesh._rates import RateTracker
from meshserve.mesh._rebalance import spread_targets
from meshserve.mesh._vmodels import VModelTable
from meshserve.metrics import MetricsRecorder
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, Registry
from meshserve.settings import MeshSettings
from meshserve.store import Election

__all__ = ["Upkeep"]

log = logging.getLogger(__name__)

SCALEUP_KEY = "scaleup_rpm_threshold"
LOGGER_LEVEL_KEY = "logger_level"
_LAST_USED_SLACK_MS = 60_000
"""Last-use times in model records are refreshed when a minute or more stale."""
_SCALE_DOWN_SHARE = 0.05
"""At most this share of the capacity is freed per pass (ModelMesh's)."""


class Upkeep:
    """The background loops of one instance."""

    def __init__(
        self,
        *,
        instance_id: InstanceId,
        registry: Registry,
        cache: ModelCache,
        copies: Copies,
        view: MeshView,
        rates: RateTracker,
        vmodels: VModelTable,
        own: OwnRecords,
        membership: Membership,
        metrics: MetricsRecorder,
        clock: Clock,
        settings: MeshSettings,
        spawn: Spawn,
    ) -> None:
        self._instance_id = instance_id
        self._registry = registry
        self._cache = cache
        self._copies = copies
        self._view = view
        self._rates = rates
        self._vmodels = vmodels
        self._own = own
        self._membership = membership
        self._metrics = metrics
        self._clock = clock
        self._settings = settings
        self._spawn = spawn
        self._election = Election(
            registry.store,
            name="reaper",
            candidate_id=instance_id,
            ttl=settings.lease_ttl_s,
        )
        self._scaling: set[str] = set()
        self._had_copies: dict[str, set[str]] = {}
        """Model -> the live instances holding it at the last pass."""
        self._orphans: set[str] = set()
        self._held_at_outage: set[str] | None = None
        """Copies held here when contact with the store was last lost."""
        self._outage_copies: set[str] = set()
        """Copies loaded here while the view was the last known one: they may
        duplicate copies of peers that were only out of sight."""
        view.contact.lost_event.subscribe(lambda _: self._remember_held())

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        settings = self._settings
        loops = [
            self._every(settings.rate_check_interval_s, self.rates_pass, "rates"),
            self._every(settings.janitor_interval_s, self.janitor_pass, "janitor"),
            self._every(settings.last_use_publish_interval_s, self.publish_last_use, "last-use"),
            self._every(settings.reaper_interval_s, self.reaper_pass, "reaper"),
        ]
        async with self._election:
            tasks = [_tasks.start_supervised(loop, name="upkeep") for loop in loops]
            try:
                yield
            finally:
                for task in tasks:
                    await _tasks.cancel_and_wait(task)

    async def _every(
        self, interval_s: float, work: Callable[[], Awaitable[None]], name: str
    ) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await work()
            except MeshServeError as exc:
                log.warning("%s pass failed: %s", name, exc)

    @property
    def is_leader(self) -> bool:
        return self._election.is_leader

    def scaleup_threshold(self) -> int:
        raw = self._registry.config(SCALEUP_KEY)
        if raw is not None:
            try:
                return max(1, int(float(raw)))
            except ValueError:
                log.warning("ignoring config %s=%r: not a number", SCALEUP_KEY, raw)
        return self._settings.scaleup_rpm_threshold

    # -- rates and copies ----------------------------------------------------

    async def rates_pass(self) -> None:
        threshold = self.scaleup_threshold()
        if self._view.trusts_absences():
            await self._trim_outage_copies()
            # One snapshot for the pass: listing the loaded models walks the
            # whole cache, which with thousands of models stalls the loop.
            loaded = self._cache.loaded_ids()
            for model_id in loaded:
                if self._rates.rpm(model_id) > threshold and model_id not in self._scaling:
                    self._scale_up(model_id)
            self._rebalance(loaded)
            await self._scale_down(threshold, loaded)
        self._membership.poke()
        self._report()
        self._apply_logger_level()
        if self.is_leader:
            for vmodel_id in list(self._registry.vmodels):
                self._vmodels.kick_transition(vmodel_id)

    def _apply_logger_level(self) -> None:
        """The ``logger_level`` config key sets meshserve's log level live."""
        level = self._registry.config(LOGGER_LEVEL_KEY)
        if level is None:
            return
        number = logging.getLevelName(level)
        target = logging.getLogger("meshserve")
        if isinstance(number, int) and number != target.getEffectiveLevel():
            log.warning("log level set to %s (config %s)", level, LOGGER_LEVEL_KEY)
            target.setLevel(number)

    def _scale_up(self, model_id: str) -> None:
        record = self._registry.model(model_id)
        if record is None:
            return
        label = required_label(record.type.lower())
        hosts = [
            r for r in self._view.live_instances() if label in r.labels and not r.shutting_down
        ]
        if self._copies.copy_count(model_id) >= len(hosts):
            return  # at most one copy per instance
        self._scaling.add(model_id)
        self._spawn(self._add_copy(model_id, None), name=f"scale-up:{model_id}")

    def _rebalance(self, loaded: list[str]) -> None:
        """Give copies of the hottest of the ``loaded`` models here to
        underused instances (one per such instance per pass, while the mesh
        has room to spare)."""
        if self._scaling:
            return  # one at a time: the next pass sees its effect on the records
        live = self._view.live_instances()
        capacity = sum(r.capacity_bytes for r in live)
        free = sum(max(0, r.free_bytes) for r in live)
        if capacity <= 0 or free / capacity <= 2 * self._settings.scale_down_free_fraction:
            return  # near the point where extra copies are removed: no churn
        hottest = sorted(
            ((m, self._rates.rpm(m)) for m in loaded),
            key=lambda item: -item[1],
        )

        def label(model_id: str) -> str | None:
            record = self._registry.model(model_id)
            return None if record is None else required_label(record.type.lower())

        for model_id, target in spread_targets(
            own_rpm=self._rates.total_rpm(),
            hottest=hottest,
            others=[r for r in live if r.instance_id != self._instance_id],
            holders=self._copies.holders,
            label=label,
            min_rpm=self._settings.rebalance_min_rpm,
            load_ratio=self._settings.rebalance_load_ratio,
            default_model_size=self._cache.default_size,
        ):
            self._scaling.add(model_id)
            self._spawn(self._add_copy(model_id, target), name=f"spread:{model_id}")

    async def _add_copy(self, model_id: str, target: InstanceRecord | None) -> None:
        """Add a copy of a hot model (on ``target``, or where placement says)."""
        where = "" if target is None else f" on {target.instance_id}"
        try:
            if await self._copies.add_copy(model_id, target=target):
                log.info("%s is hot: added a copy%s", model_id, where)
        except MeshServeError as exc:
            log.info("could not add a copy of %s%s: %s", model_id, where, exc)
        finally:
            self._scaling.discard(model_id)

    def _remember_held(self) -> None:
        if self._held_at_outage is None:
            self._held_at_outage = {m for m in self._registry.models if self._copies.here(m)}

    async def _trim_outage_copies(self) -> None:
        """Once the view is refreshed after a store outage, a copy loaded
        here meanwhile that duplicates another instance's goes, unless the
        model is hot enough for load spreading to want it (the newest copy
        removes itself, as in scale-down)."""
        held, self._held_at_outage = self._held_at_outage, None
        if held is not None:
            self._outage_copies |= set(self._cache.loaded_ids()) - held
        for model_id in list(self._outage_copies):
            if not self._cache.is_loaded(model_id):
                self._outage_copies.discard(model_id)
                continue
            if self._rates.rpm(model_id) >= self._settings.rebalance_min_rpm:
                self._outage_copies.discard(model_id)
                continue
            entry = self._removable(model_id)
            if entry is None:
                if not self._view.remote_copies(model_id, states=LOADED):
                    self._outage_copies.discard(model_id)  # the only copy: keep it
                continue
            log.info("after the store outage: removing the duplicate copy of %s here", model_id)
            self._outage_copies.discard(model_id)
            await self._cache.evict(entry)

    def _removable(self, model_id: str) -> CacheEntry | None:
        """This instance's copy, if another live instance holds the model
        loaded too, nothing uses ours now, and ours is the newest (so two
        instances never remove the same model's last copies at once)."""
        others = self._view.remote_copies(model_id, states=LOADED)
        if not others:
            return None
        entry = self._cache.lru.get(model_id)
        if entry is None or entry.inflight:
            return None
        mine = (entry.loaded_at_ms, self._instance_id)
        if any((c.time_ms, c.instance_id) > mine for c in others):
            return None  # a newer copy elsewhere removes itself instead
        return entry

    async def _scale_down(self, threshold: int, loaded: list[str]) -> None:
        """Remove cold extra copies among the ``loaded`` models (most
        recently used first) while the mesh is short of space."""
        live = self._view.live_instances()
        capacity = sum(r.capacity_bytes for r in live)
        free = sum(max(0, r.free_bytes) for r in live)
        if capacity <= 0 or free / capacity > self._settings.scale_down_free_fraction:
            return
        budget = int(self._cache.lru.capacity_bytes * _SCALE_DOWN_SHARE)
        for model_id in reversed(loaded):  # least recently used first
            if budget <= 0:
                return
            if self._rates.rpm(model_id) * 2 > threshold:
                continue
            entry = self._removable(model_id)
            if entry is None:
                continue
            log.info("mesh short of space: removing the extra copy of %s here", model_id)
            budget -= entry.size_bytes
            await self._cache.evict(entry)

    def _report(self) -> None:
        lru = self._cache.lru
        oldest = lru.oldest_last_used_ms()
        self._metrics.set_instance(
            capacity_bytes=lru.capacity_bytes,
            used_bytes=lru.used_bytes,
            model_copies=self._cache.loaded_count(),
            lru_last_used_ms=oldest or None,
            now_ms=int(self._clock.time() * 1000),
        )
        if self.is_leader:
            models = self._registry.models
            loaded = sum(1 for m in models if self._copies.copy_count(m) > 0)
            failed = sum(1 for m in models if self._copies.mesh_failure(m) is not None)
            self._metrics.set_cluster(
                models_loaded=loaded, models_managed=len(models), models_with_failure=failed
            )
        else:
            self._metrics.clear_cluster()

    # -- janitor -------------------------------------------------------------

    async def janitor_pass(self) -> None:
        cache = self._cache
        for model_id in cache.loaded_ids():
            if self._registry.model(model_id) is None:
                log.info("janitor: %s is no longer registered; unloading it", model_id)
                await cache.drop(model_id)
        cache.expire_failures()
        published: dict[str, CopyRecord] = {
            c.model_id: c for c in self._registry.copies_on(self._instance_id)
        }
        for model_id in set(published) | set(self._registry.models):
            state = cache.state(model_id)
            copy = published.get(model_id)
            if (copy.state if copy is not None else None) != copy_state(state):
                self._membership.copy_changed(model_id, self._own.copy_record(model_id, state))

    async def publish_last_use(self) -> None:
        """Keep model records' last use roughly current: the reaper reloads
        lost models most recently used first, on any instance, and every
        instance's ``models list`` shows it."""
        for entry in self._cache.lru.entries():
            versioned = self._registry.models.get(entry.model_id)
            if versioned is None:
                continue
            record = versioned.record
            if entry.last_used_ms - record.last_used_ms < _LAST_USED_SLACK_MS:
                continue
            updated = dataclasses.replace(record, last_used_ms=entry.last_used_ms)
            # A lost race means someone else wrote it; the next pass catches up.
            await self._registry.update_model(updated, expected_revision=versioned.revision)

    # -- reaper (leader only) --------------------------------------------------

    async def reaper_pass(self) -> None:
        """Reload models whose every copy was on instances that are gone
        (not models evicted for space: their instances are still alive)."""
        if not self.is_leader:
            self._had_copies.clear()
            return
        if not self._view.trusts_absences():
            # Instances missing now may be back in a moment: keep what was
            # held before, and judge once the view is refreshed.
            return
        live = set(self._registry.instances) | {self._instance_id}
        holders_now: dict[str, set[str]] = {}
        lost: list[tuple[int, str]] = []
        for model_id in list(self._registry.models):
            holders: set[str] = {
                c.instance_id
                for c in self._registry.copies(model_id).values()
                if c.instance_id in live and c.state is not CopyState.FAILED
            }
            if self._copies.here(model_id):
                holders.add(self._instance_id)
            if holders:
                holders_now[model_id] = holders
            elif self._had_copies.get(model_id, set()) - live:
                record = self._registry.model(model_id)
                lost.append((record.last_used_ms if record is not None else 0, model_id))
        self._had_copies = holders_now
        for _, model_id in sorted(lost, reverse=True):
            log.info("reaper: %s lost its last copy with its instance; loading it again", model_id)
            try:
                await self._copies.ensure_available(model_id, sync=False)
            except MeshServeError as exc:
                log.warning("reaper: cannot reload %s: %s", model_id, exc)
        await self._delete_orphans(live)

    async def _delete_orphans(self, live: set[str]) -> None:
        """Copy records whose instance is gone (seen two passes running)."""
        orphans = {
            f"{c.model_id}\0{c.instance_id}"
            for model_id in list(self._registry.models)
            for c in self._registry.copies(model_id).values()
            if c.instance_id not in live
        }
        for orphan in orphans & self._orphans:
            model_id, instance_id = orphan.split("\0")
            with contextlib.suppress(MeshServeError):
                await self._registry.delete_copy(
                    model_id=ModelId(model_id), instance_id=InstanceId(instance_id)
                )
        self._orphans = orphans - self._orphans
