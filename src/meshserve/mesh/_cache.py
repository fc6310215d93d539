"""The instance's cache of loaded models: loads, evictions, failures.

One load per model at a time (concurrent requests wait on the same load),
at most ``max_loading_concurrency`` loads at once, each bounded by the load
timeout; space is made by evicting the copies the eviction policy ranks
lowest (``cache.evictionPolicy``: GDSF, or ModelMesh's LRU); a failed
load is remembered with its reason until it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from meshserve import _tasks
from meshserve._clock import Clock
from meshserve.errors import (
    LoadTimeoutError,
    MeshServeError,
    ModelLoadError,
    ModelNotFoundError,
    ModelTooLargeError,
    UnavailableError,
)
from meshserve.mesh._eviction import make_policy
from meshserve.mesh._lru import UNIT_BYTES, CacheEntry, EntryState, InUse, WeightedLru
from meshserve.mesh._quotas import LoadQuota
from meshserve.mesh._sizing import SizeRatio
from meshserve.mesh._status import ModelState
from meshserve.metrics import MetricsRecorder, NullMetrics
from meshserve.resources import redact_uris
from meshserve.runtime import ModelSpec, Runtime, RuntimeStatus
from meshserve.settings import CacheSettings
from meshserve.storage import PulledModel, PullProgress, check_location
from meshserve.tracing import names as trace
from meshserve.tracing import span

__all__ = ["ArtifactPuller", "LoadFailure", "ModelCache", "ModelStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadFailure:
    error: MeshServeError
    time_s: float


@dataclass(slots=True)
class ModelStats:
    loads: int = 0
    evictions: int = 0
    last_load_ms: int = 0
    pull_ms: int = 0
    """How long the last pull from storage took (0: nothing to pull)."""
    pull_bytes: int = 0
    """Bytes of the last pull (so far, while it runs)."""
    pull_total_bytes: int = 0
    """Size of the pull in progress, when the store reported it."""
    pulled_from_cache: bool = False
    size_bytes: int = 0
    """The size the runtime measured at the last load (0: never loaded)."""


class ArtifactPuller(Protocol):
    """Fetches a model's artifact to local disk (``meshserve.storage.Puller``)."""

    def check_location(self, *, model_id: str, model_path: str, model_key: str) -> None:
        """InvalidRequestError for a location no pull would take (a
        credential in it, a local path outside the allowed roots)."""
        ...

    async def pull(self, *, model_id: str, model_path: str, model_key: str) -> PulledModel: ...

    async def release(self, model_id: str) -> None: ...


class ModelCache:
    """Loaded models of one runtime, kept within its capacity."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        status: RuntimeStatus,
        settings: CacheSettings,
        clock: Clock,
        metrics: MetricsRecorder | None = None,
        puller: ArtifactPuller | None = None,
    ) -> None:
        self._runtime = runtime
        self._puller = puller
        self._metrics = metrics or NullMetrics()
        self._settings = settings
        self._clock = clock
        self.lru = WeightedLru(
            status.capacity_bytes,
            policy=make_policy(
                settings.eviction_policy,
                half_life_ms=settings.frequency_half_life_seconds * 1000,
                remembered=settings.frequency_memory_models,
                unit_bytes=UNIT_BYTES,
            ),
        )
        self.default_size = status.default_model_size_bytes
        self._size_ratio = SizeRatio()
        self._load_timeout_s = status.model_loading_timeout_ms / 1000
        self.loading_slots = max(1, status.max_loading_concurrency)
        self._slots = asyncio.Semaphore(self.loading_slots)
        self._loads: dict[str, asyncio.Future[None]] = {}
        self._failures: dict[str, LoadFailure] = {}
        self.stats: dict[str, ModelStats] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.listener: Callable[[str, ModelState], None] | None = None
        """Told each time a model's state here changes (the mesh publishes it)."""
        self.quota: LoadQuota | None = None
        """Asked before each load (namespace byte quotas), told each measured size."""

    def _changed(self, model_id: str, state: ModelState) -> None:
        if self.listener is not None:
            self.listener(model_id, state)

    async def close(self) -> None:
        for task in list(self._tasks):
            await _tasks.cancel_and_wait(task)

    def now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    # -- state ---------------------------------------------------------------

    def failure(self, model_id: str) -> LoadFailure | None:
        """The model's unexpired load failure, if any."""
        failure = self._failures.get(model_id)
        if failure is None:
            return None
        if self._clock.time() - failure.time_s >= self._settings.load_failure_expiry_seconds:
            del self._failures[model_id]
            return None
        return failure

    def state(self, model_id: str) -> ModelState:
        entry = self.lru.get(model_id)
        if entry is not None and entry.state is EntryState.LOADED:
            return ModelState.LOADED
        if model_id in self._loads:
            return ModelState.LOADING
        if self.failure(model_id) is not None:
            return ModelState.LOADING_FAILED
        return ModelState.NOT_LOADED

    def is_loading(self, model_id: str) -> bool:
        return model_id in self._loads

    @property
    def loading_count(self) -> int:
        return len(self._loads)

    def is_loaded(self, model_id: str) -> bool:
        entry = self.lru.get(model_id)
        return entry is not None and entry.state is EntryState.LOADED

    def loaded_count(self) -> int:
        """How many models are loaded (published with every record: no
        sort, unlike :meth:`loaded_ids`)."""
        return self.lru.count(EntryState.LOADED)

    def loaded_ids(self) -> list[str]:
        """Loaded models, most recently used first."""
        return [e.model_id for e in reversed(self.lru.entries()) if e.state is EntryState.LOADED]

    # -- loading -------------------------------------------------------------

    async def ensure_loaded(self, spec: ModelSpec, *, last_used_ms: int) -> None:
        """Return once ``spec`` is loaded, loading it if needed.

        Raises the load's error, or the recorded one while it is unexpired.
        """
        if self.is_loaded(spec.model_id):
            return
        await asyncio.shield(self.start_load(spec, last_used_ms=last_used_ms))

    def start_load(self, spec: ModelSpec, *, last_used_ms: int) -> asyncio.Future[None]:
        """The future of the model's load, starting one if none runs."""
        model_id = spec.model_id
        running = self._loads.get(model_id)
        if running is not None:
            return running
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.is_loaded(model_id):
            future.set_result(None)
            return future
        failure = self.failure(model_id)
        if failure is not None:
            future.set_exception(failure.error)
            future.exception()  # retrieved: nobody may be waiting
            return future
        self._loads[model_id] = future
        self._changed(model_id, ModelState.LOADING)
        task = _tasks.start_supervised(
            self._load(spec, last_used_ms=last_used_ms, future=future), name=f"load:{model_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _load(
        self, spec: ModelSpec, *, last_used_ms: int, future: asyncio.Future[None]
    ) -> None:
        model_id = spec.model_id
        queued = self._clock.monotonic()
        try:
            async with self._slots:
                self._metrics.observe_loading_queue_delay(
                    (self._clock.monotonic() - queued) * 1000, model_id=model_id
                )
                await self._load_now(spec, last_used_ms=last_used_ms)
        except asyncio.CancelledError:
            future.cancel()
            await asyncio.shield(self._release(model_id))
            raise
        except MeshServeError as exc:
            await self._release(model_id)
            future.set_exception(exc)
        except Exception as exc:
            log.exception("unexpected failure loading %s", model_id)
            future.set_exception(ModelLoadError(f"model '{model_id}' failed to load: {exc}"))
        else:
            future.set_result(None)
        finally:
            self._loads.pop(model_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # mark retrieved; waiters re-raise it themselves

    async def _predicted_size(self, spec: ModelSpec) -> tuple[int, int]:
        """The size to make room for, and the runtime's own estimate (0: it
        gave none, or was not asked)."""
        # A model loaded here before reloads at the size it measured then:
        # the runtime's estimate can be several times too big for small
        # models (skops: 1.3x the file + 256 KiB), and each load would
        # evict that much more than it needs.
        known = self.stats.get(spec.model_id)
        if known is not None and known.size_bytes > 0:
            return known.size_bytes, 0
        estimate = await self._runtime_estimate(spec)
        if not estimate:
            return self.default_size, 0
        # Scaled by how far the runtime's estimates have overshot so far
        # (never scaled up: a load measured bigger settles the difference).
        return max(1, int(estimate * self._size_ratio.value)), estimate

    async def _runtime_estimate(self, spec: ModelSpec) -> int:
        started = self._clock.monotonic()
        try:
            size = await asyncio.wait_for(
                self._runtime.predict_size(spec), self._settings.predict_size_timeout_s
            )
            self._metrics.observe_sizing(
                (self._clock.monotonic() - started) * 1000, model_id=spec.model_id
            )
        except (TimeoutError, MeshServeError) as exc:
            log.debug("no size prediction for %s (%s); using the default", spec.model_id, exc)
            return 0
        return max(0, size)

    async def _load_now(self, spec: ModelSpec, *, last_used_ms: int) -> None:
        model_id = spec.model_id
        capacity = self.lru.capacity_bytes
        spec = await self._pull(spec)
        predicted, estimate = await self._predicted_size(spec)
        if predicted > capacity:
            self._record_failure(
                model_id,
                ModelTooLargeError(
                    f"model '{model_id}' needs about {predicted} bytes, more than the "
                    f"runtime's whole capacity of {capacity} bytes"
                ),
            )
        if self.quota is not None:
            try:
                await self.quota.admit_load(model_id, predicted)
            except ModelLoadError as exc:
                self._record_failure(model_id, exc)
        await self._make_room(model_id, predicted, older_than_ms=last_used_ms)
        self.lru.add(model_id, size_bytes=predicted, last_used_ms=last_used_ms)
        started = self._clock.monotonic()
        try:
            result = await asyncio.wait_for(self._runtime.load(spec), self._load_timeout_s)
        except TimeoutError:
            self.lru.remove(model_id)
            # The runtime may still be loading: tell it to drop the result.
            with contextlib.suppress(MeshServeError):
                await self._runtime.unload(model_id)
            self._record_failure(
                model_id,
                LoadTimeoutError(
                    f"model '{model_id}' did not load within "
                    f"{int(self._load_timeout_s * 1000)} ms (modelLoadingTimeoutMillis)"
                ),
            )
        except ModelLoadError as exc:
            self.lru.remove(model_id)
            self._record_failure(model_id, exc)
        except BaseException:
            self.lru.remove(model_id)
            self._changed(model_id, ModelState.NOT_LOADED)
            with contextlib.suppress(Exception):
                await self._runtime.unload(model_id)
            raise
        size = result.size_bytes or await self._runtime.model_size(model_id)
        if size > capacity:
            self.lru.remove(model_id)
            await self._runtime.unload(model_id)
            self._record_failure(
                model_id,
                ModelTooLargeError(
                    f"model '{model_id}' measured {size} bytes after loading, more than the "
                    f"runtime's whole capacity of {capacity} bytes"
                ),
            )
        self.lru.resize(model_id, size)
        entry = self.lru.get(model_id)
        assert entry is not None
        entry.state = EntryState.LOADED
        entry.loaded_at_ms = self.now_ms()
        duration_ms = int((self._clock.monotonic() - started) * 1000)
        stats = self.stats.setdefault(model_id, ModelStats())
        stats.loads += 1
        stats.last_load_ms = duration_ms
        stats.size_bytes = size
        if estimate:
            self._size_ratio.learn(size / estimate)
        self.lru.loaded(model_id, load_ms=duration_ms)
        self._metrics.observe_load(duration_ms, size_bytes=size, model_id=model_id)
        self._failures.pop(model_id, None)
        log.info("loaded %s (%d bytes) in %d ms", model_id, size, duration_ms)
        self._changed(model_id, ModelState.LOADED)
        if self.quota is not None:
            task = _tasks.start_supervised(
                self.quota.record_size(model_id, size), name=f"record-size:{model_id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.lru.free_bytes < 0:
            # Measured bigger than predicted: settle the difference now. If
            # nothing can go, the overcommit lasts until the next eviction.
            with contextlib.suppress(UnavailableError):
                await self._make_room(model_id, 0, older_than_ms=self.now_ms() + 1, keep=model_id)

    def check_location(self, *, model_id: str, model_path: str, model_key: str) -> None:
        """Refuse (InvalidRequestError) a registration's location: a
        credential in its path or key, or (with a puller) a local path
        outside the allowed roots."""
        if self._puller is None:
            check_location(model_path=model_path, model_key=model_key)
        else:
            self._puller.check_location(
                model_id=model_id, model_path=model_path, model_key=model_key
            )

    async def _pull(self, spec: ModelSpec) -> ModelSpec:
        """The spec with its artifact on local disk (pulled from storage if
        its path or key names a store)."""
        if self._puller is None:
            return spec
        stats = self.stats.setdefault(spec.model_id, ModelStats())
        stats.pull_ms = stats.pull_bytes = stats.pull_total_bytes = 0
        try:
            with span(trace.PULL, attributes={trace.MODEL_ID: spec.model_id}):
                pulled = await self._puller.pull(
                    model_id=spec.model_id, model_path=spec.model_path, model_key=spec.model_key
                )
        except ModelLoadError as exc:
            self._record_failure(spec.model_id, exc)
        if pulled.local_path == spec.model_path:
            return spec  # a local path: nothing was pulled
        stats.pull_ms = int(pulled.seconds * 1000)
        stats.pull_bytes = pulled.bytes
        stats.pull_total_bytes = pulled.bytes
        stats.pulled_from_cache = pulled.from_cache
        self._metrics.observe_pull(
            pulled.seconds * 1000, size_bytes=pulled.bytes, model_id=spec.model_id
        )
        return replace(spec, model_path=pulled.local_path)

    def on_pull_progress(self, progress: PullProgress) -> None:
        """A pull in progress moved (shown by ``models list`` while it runs)."""
        stats = self.stats.setdefault(progress.model_id, ModelStats())
        stats.pull_bytes = progress.bytes_done
        stats.pull_total_bytes = progress.bytes_total or 0

    async def _release(self, model_id: str) -> None:
        if self._puller is not None:
            try:
                await self._puller.release(model_id)
            except (MeshServeError, OSError) as exc:
                log.warning("could not remove the pulled files of %s: %s", model_id, exc)

    def _record_failure(self, model_id: str, error: MeshServeError) -> None:
        log.warning("load of %s failed: %s", model_id, redact_uris(str(error)))
        self._failures[model_id] = LoadFailure(error=error, time_s=self._clock.time())
        self._metrics.load_failed()
        self._changed(model_id, ModelState.LOADING_FAILED)
        raise error

    async def _make_room(
        self, model_id: str, size: int, *, older_than_ms: int, keep: str | None = None
    ) -> None:
        victims = self.lru.victims(
            needed_bytes=size, older_than_ms=older_than_ms, keep=keep, now_ms=self.now_ms()
        )
        if victims is None:
            raise UnavailableError(
                f"no room for model '{model_id}' ({size} bytes): the cache "
                f"({self.lru.used_bytes} of {self.lru.capacity_bytes} bytes used) holds only "
                "models that are loading, in use, or used more recently"
            )
        for victim in victims:
            await self.evict(victim)

    async def evict(self, entry: CacheEntry) -> None:
        age_ms = self.now_ms() - entry.last_used_ms
        log.info(
            "evicting %s (%d bytes, unused for %d ms)", entry.model_id, entry.size_bytes, age_ms
        )
        self.lru.remove(entry.model_id)
        self.stats.setdefault(entry.model_id, ModelStats()).evictions += 1
        self._changed(entry.model_id, ModelState.NOT_LOADED)
        self._metrics.observe_eviction(age_ms, model_id=entry.model_id)
        await self._unload(entry.model_id)

    async def _unload(self, model_id: str) -> None:
        started = self._clock.monotonic()
        try:
            await self._runtime.unload(model_id)
        except MeshServeError as exc:
            log.warning("unloading %s failed: %s", model_id, exc)
            self._metrics.unload_failed()
        else:
            self._metrics.observe_unload(
                (self._clock.monotonic() - started) * 1000, model_id=model_id
            )
        await self._release(model_id)

    async def drop(self, model_id: str) -> None:
        """Forget a model entirely (it was unregistered)."""
        running = self._loads.get(model_id)
        if running is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(running)
        entry = self.lru.remove(model_id)
        self._failures.pop(model_id, None)
        self.stats.pop(model_id, None)
        self._changed(model_id, ModelState.NOT_LOADED)
        if entry is not None:
            await self._unload(model_id)

    def forget_all(self) -> list[str]:
        """The runtime lost every model (it restarted): clear the accounting
        and return what was loaded, most recently used first."""
        loaded = self.loaded_ids()
        for model_id in loaded:
            self.lru.remove(model_id)
            self._changed(model_id, ModelState.NOT_LOADED)
        return loaded

    def forget(self, model_id: str) -> None:
        """The runtime says it does not have this model any more."""
        self.lru.remove(model_id)
        self._changed(model_id, ModelState.NOT_LOADED)

    def expire_failures(self) -> list[str]:
        """Drop expired failure records; the ids whose failure went."""
        expired = [m for m in list(self._failures) if self.failure(m) is None]
        for model_id in expired:
            self._changed(model_id, ModelState.NOT_LOADED)
        return expired

    def in_use(self, model_id: str) -> InUse:
        """Mark a copy busy (never evicted) while a request runs on it (the
        ``with`` block); ModelNotFoundError when it is not loaded."""
        entry = self.lru.get(model_id)
        if entry is None or entry.state is not EntryState.LOADED:
            raise ModelNotFoundError(f"model '{model_id}' is not loaded")
        entry.inflight += 1
        self.lru.used(model_id, self.now_ms())
        return InUse(entry)
