"""One meshserve instance: registrations, vmodels, routing and the cache.

The instance implements the front ends' ``InferenceBackend`` and the
management API's operations. Routing reads only the registry's in-memory
mirror; a model is loaded on its first request (or at registration with
``loadNow``) and evicted when space is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from meshserve import __version__, _tasks
from meshserve._clock import Clock, SystemClock
from meshserve.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    MeshServeError,
    ModelNotFoundError,
    PreconditionFailedError,
)
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._status import (
    CopyInfo,
    ModelState,
    ModelStatus,
    ModelSummary,
    VModelState,
    VModelStatus,
)
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import RoutingHeaders, ServerInfo
from meshserve.registry import ModelRecord, Registry, VModelRecord
from meshserve.runtime import ModelSpec, Runtime
from meshserve.settings import CacheSettings

__all__ = ["Instance"]

log = logging.getLogger(__name__)

T = TypeVar("T")

HOUR_MS = 3_600_000
# ModelMesh's registration timestamps: a proactive load never displaces a
# model used within the last hour; a plain registration ranks below that.
LOAD_NOW_AGE_MS = 1 * HOUR_MS
REGISTER_AGE_MS = 6 * HOUR_MS

_SERVER_EXTENSIONS = ("binary_tensor_data", "model_repository")


class Instance:
    """A serving instance over one runtime. Open it with :meth:`open`."""

    def __init__(
        self,
        *,
        instance_id: str,
        registry: Registry,
        runtime: Runtime,
        cache: ModelCache,
        settings: CacheSettings,
        clock: Clock,
    ) -> None:
        self.instance_id = instance_id
        self._registry = registry
        self._runtime = runtime
        self.cache = cache
        self._settings = settings
        self._clock = clock
        self._transitions: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._ready = False

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        *,
        instance_id: str,
        registry: Registry,
        runtime: Runtime,
        settings: CacheSettings,
        clock: Clock | None = None,
        janitor_interval_s: float = 5.0,
    ) -> AsyncIterator[Instance]:
        """Run an instance over an open registry and a started runtime."""
        clock = clock or SystemClock()
        status = await runtime.status()
        cache = ModelCache(runtime=runtime, status=status, settings=settings, clock=clock)
        instance = cls(
            instance_id=instance_id,
            registry=registry,
            runtime=runtime,
            cache=cache,
            settings=settings,
            clock=clock,
        )
        janitor = _tasks.start_supervised(
            instance._janitor(janitor_interval_s), name="instance-janitor"
        )
        try:
            yield instance
        finally:
            instance._ready = False
            await _tasks.cancel_and_wait(janitor)
            for task in [*instance._transitions.values(), *instance._background]:
                await _tasks.cancel_and_wait(task)
            await cache.close()

    def now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    def _spawn(self, coro: Awaitable[None], *, name: str) -> asyncio.Task[None]:
        async def run() -> None:
            await coro

        task = _tasks.start_supervised(run(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # -- routing (InferenceBackend) -----------------------------------------

    def resolve(self, name: str, headers: RoutingHeaders) -> str:
        if headers.model_id and headers.vmodel_id:
            raise InvalidRequestError(
                "give either the mm-model-id or the mm-vmodel-id header, not both"
            )
        if headers.vmodel_id:
            vmodel = self._registry.vmodel(headers.vmodel_id)
            if vmodel is None:
                raise ModelNotFoundError(f"vmodel '{headers.vmodel_id}' is not registered")
            return vmodel.active_model_id
        if headers.model_id:
            if self._registry.model(headers.model_id) is None:
                raise ModelNotFoundError(f"model '{headers.model_id}' is not registered")
            return headers.model_id
        vmodel = self._registry.vmodel(name)
        if vmodel is not None:
            return vmodel.active_model_id
        if self._registry.model(name) is not None:
            return name
        raise ModelNotFoundError(f"model '{name}' is not registered")

    def _spec(self, model_id: str) -> ModelSpec:
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model '{model_id}' is not registered")
        return ModelSpec(
            model_id=model_id, model_type=record.type, model_path=record.path, model_key=record.key
        )

    async def _serve(self, model_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` on a loaded copy, loading it first if needed."""
        for attempt in range(2):
            if not self.cache.is_loaded(model_id):
                await self.cache.ensure_loaded(self._spec(model_id), last_used_ms=self.now_ms())
            try:
                async with self.cache.in_use(model_id):
                    return await call()
            except ModelNotFoundError:
                # Unregistered meanwhile: report that. Otherwise the runtime
                # lost the model (it restarted): account for it and reload once.
                if attempt or self._registry.model(model_id) is None:
                    raise
                log.warning("runtime no longer has %s; reloading it", model_id)
                self.cache.forget(model_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        return await self._serve(model_id, lambda: self._runtime.infer(model_id, request))

    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        return await self._serve(model_id, lambda: self._runtime.infer_grpc(model_id, body))

    async def model_metadata(self, model_id: str) -> ModelMetadata:
        return await self._serve(model_id, lambda: self._runtime.metadata(model_id))

    def model_ready(self, model_id: str) -> bool:
        return self.cache.is_loaded(model_id)

    def server_ready(self) -> bool:
        return self._ready

    def mark_ready(self) -> None:
        """Start answering readiness probes with "ready" (once set up)."""
        self._ready = True

    def server_info(self) -> ServerInfo:
        return ServerInfo(name="meshserve", version=__version__, extensions=_SERVER_EXTENSIONS)

    async def on_runtime_restart(self) -> None:
        """The runtime came back empty: reload what was loaded, most recently
        used first (ModelMesh's order after losing copies)."""
        lost = self.cache.forget_all()
        if not self._settings.reload_after_restart:
            return
        for model_id in lost:
            if self._registry.model(model_id) is None:
                continue
            with contextlib.suppress(MeshServeError):
                await self.cache.ensure_loaded(self._spec(model_id), last_used_ms=self.now_ms())

    # -- models (management API) --------------------------------------------

    def model_status(self, model_id: str) -> ModelStatus:
        if self._registry.model(model_id) is None:
            return ModelStatus(ModelState.NOT_FOUND)
        state = self.cache.state(model_id)
        errors: tuple[str, ...] = ()
        failure = self.cache.failure(model_id)
        if failure is not None:
            errors = (str(failure.error),)
        copies: tuple[CopyInfo, ...] = ()
        entry = self.cache.lru.get(model_id)
        if state in (ModelState.LOADED, ModelState.LOADING):
            time_ms = (
                entry.loaded_at_ms if entry is not None and entry.loaded_at_ms else self.now_ms()
            )
            copies = (CopyInfo(self.instance_id, state, time_ms),)
        elif failure is not None:
            copies = (
                CopyInfo(self.instance_id, ModelState.LOADING_FAILED, int(failure.time_s * 1000)),
            )
        return ModelStatus(state, errors, copies)

    async def register_model(
        self,
        model_id: str,
        *,
        type: str,
        path: str = "",
        key: str = "",
        load_now: bool = False,
        sync: bool = False,
        last_used_ms: int = 0,
        auto_delete: bool = False,
    ) -> ModelStatus:
        """Register a model (idempotent for identical parameters)."""
        if not model_id:
            raise InvalidRequestError("modelId must not be empty")
        if not type:
            raise InvalidRequestError(f"model '{model_id}': modelInfo.type must not be empty")
        existing = self._registry.model(model_id)
        if existing is not None:
            if not existing.same_model(type=type, path=path, key=key):
                raise AlreadyExistsError(
                    f"model '{model_id}' is already registered with different parameters "
                    f"(type {existing.type!r}, path {existing.path!r})"
                )
        else:
            now = self.now_ms()
            if not last_used_ms:
                last_used_ms = now - (LOAD_NOW_AGE_MS if load_now else REGISTER_AGE_MS)
            record = ModelRecord(
                model_id=model_id,
                type=type,
                path=path,
                key=key,
                auto_delete=auto_delete,
                registered_ms=now,
                last_used_ms=last_used_ms,
            )
            if not await self._registry.create_model(record):
                return await self.register_model(
                    model_id, type=type, path=path, key=key, load_now=load_now, sync=sync
                )
            log.info("registered model %s (%s, %s)", model_id, type, path)
        if load_now:
            await self._load_now(model_id, sync=sync)
        return self.model_status(model_id)

    async def _load_now(self, model_id: str, *, sync: bool) -> None:
        record = self._registry.model(model_id)
        assert record is not None
        future = self.cache.start_load(self._spec(model_id), last_used_ms=record.last_used_ms)
        if sync:
            with contextlib.suppress(MeshServeError):
                await asyncio.shield(future)

    async def unregister_model(self, model_id: str) -> None:
        """Delete a model; no effect if unknown; refused while a vmodel uses it."""
        users = self._registry.referencing_vmodels(model_id)
        if users:
            raise PreconditionFailedError(
                f"model '{model_id}' is used by vmodel(s) {', '.join(users)}; "
                "delete or retarget them first"
            )
        await self._delete_model(model_id)

    async def _delete_model(self, model_id: str) -> None:
        while (entry := self._registry.models.get(model_id)) is not None:
            if await self._registry.delete_model(model_id, expected_revision=entry.revision):
                log.info("unregistered model %s", model_id)
                break
        await self.cache.drop(model_id)

    async def ensure_loaded(
        self, model_id: str, *, last_used_ms: int = 0, sync: bool = False
    ) -> ModelStatus:
        if self._registry.model(model_id) is None:
            return ModelStatus(ModelState.NOT_FOUND)
        now = self.now_ms()
        used = last_used_ms or now
        self.cache.lru.touch(model_id, used)
        future = self.cache.start_load(self._spec(model_id), last_used_ms=used)
        if sync:
            with contextlib.suppress(MeshServeError):
                await asyncio.shield(future)
        return self.model_status(model_id)

    def list_models(self) -> list[ModelSummary]:
        summaries = []
        for model_id, entry in sorted(self._registry.models.items()):
            record = entry.record
            cached = self.cache.lru.get(model_id)
            stats = self.cache.stats.get(model_id)
            summaries.append(
                ModelSummary(
                    model_id=model_id,
                    type=record.type,
                    path=record.path,
                    status=self.model_status(model_id),
                    size_bytes=cached.size_bytes if cached is not None else 0,
                    last_used_ms=cached.last_used_ms if cached is not None else record.last_used_ms,
                    load_count=stats.loads if stats else 0,
                    eviction_count=stats.evictions if stats else 0,
                    last_load_ms=stats.last_load_ms if stats else 0,
                    auto_delete=record.auto_delete,
                    vmodels=tuple(self._registry.referencing_vmodels(model_id)),
                )
            )
        return summaries

    # -- vmodels -------------------------------------------------------------

    def vmodel_status(self, vmodel_id: str, *, owner: str = "") -> VModelStatus:
        record = self._registry.vmodel(vmodel_id)
        if record is None or (owner and record.owner != owner):
            return VModelStatus(VModelState.NOT_FOUND)
        active = self.model_status(record.active_model_id)
        if not record.transitioning:
            return VModelStatus(
                VModelState.DEFINED,
                record.active_model_id,
                record.target_model_id,
                active,
                None,
                record.owner,
            )
        target = self.model_status(record.target_model_id)
        state = (
            VModelState.TRANSITION_FAILED
            if target.state is ModelState.LOADING_FAILED
            else VModelState.TRANSITIONING
        )
        return VModelStatus(
            state, record.active_model_id, record.target_model_id, active, target, record.owner
        )

    def list_vmodels(self) -> list[tuple[str, VModelStatus]]:
        return [(name, self.vmodel_status(name)) for name in sorted(self._registry.vmodels)]

    async def set_vmodel(
        self,
        vmodel_id: str,
        *,
        target_model_id: str,
        owner: str = "",
        update_only: bool = False,
        model_type: str = "",
        model_path: str = "",
        model_key: str = "",
        auto_delete_target: bool = False,
        load_now: bool = False,
        force: bool = False,
        sync: bool = False,
        expected_target_model_id: str = "",
    ) -> VModelStatus:
        """Create a vmodel or point it at a new target (ModelMesh's setVModel)."""
        if not vmodel_id or not target_model_id:
            raise InvalidRequestError("vModelId and targetModelId must not be empty")
        while True:
            entry = self._registry.vmodels.get(vmodel_id)
            record = entry.record if entry is not None else None
            if record is not None and owner and record.owner != owner:
                raise AlreadyExistsError(
                    f"vmodel '{vmodel_id}' exists with owner {record.owner!r}, not {owner!r}"
                )
            if expected_target_model_id:
                current = record.target_model_id if record is not None else None
                if expected_target_model_id == target_model_id:
                    if current not in (None, target_model_id):
                        raise PreconditionFailedError(
                            f"vmodel '{vmodel_id}' targets {current!r}, not {target_model_id!r}"
                        )
                elif current != expected_target_model_id:
                    raise PreconditionFailedError(
                        f"vmodel '{vmodel_id}' targets {current!r}, "
                        f"expected {expected_target_model_id!r}"
                    )
            if record is None and update_only:
                raise ModelNotFoundError(f"vmodel '{vmodel_id}' does not exist (updateOnly)")
            if model_type:
                await self.register_model(
                    target_model_id,
                    type=model_type,
                    path=model_path,
                    key=model_key,
                    auto_delete=auto_delete_target,
                )
            elif self._registry.model(target_model_id) is None:
                raise ModelNotFoundError(
                    f"target model '{target_model_id}' is not registered and no modelInfo was given"
                )
            if record is None:
                created = VModelRecord(
                    vmodel_id=vmodel_id,
                    active_model_id=target_model_id,
                    target_model_id=target_model_id,
                    owner=owner,
                )
                if not await self._registry.create_vmodel(created):
                    continue
                log.info("created vmodel %s -> %s", vmodel_id, target_model_id)
                if load_now:
                    await self._load_now(target_model_id, sync=sync)
                return self.vmodel_status(vmodel_id)
            assert entry is not None
            if record.target_model_id == target_model_id and not force:
                break
            previous_target = record.target_model_id
            updated = VModelRecord(
                vmodel_id=vmodel_id,
                active_model_id=target_model_id if force else record.active_model_id,
                target_model_id=target_model_id,
                owner=record.owner,
                extra=record.extra,
            )
            if not await self._registry.update_vmodel(updated, expected_revision=entry.revision):
                continue
            log.info("vmodel %s: target %s -> %s", vmodel_id, previous_target, target_model_id)
            await self._collect_unreferenced(previous_target, record.active_model_id)
            break
        self._kick_transition(vmodel_id, load_now=load_now)
        if sync:
            task = self._transitions.get(vmodel_id)
            if task is not None:
                with contextlib.suppress(MeshServeError):
                    await asyncio.shield(task)
        return self.vmodel_status(vmodel_id)

    async def delete_vmodel(self, vmodel_id: str, *, owner: str = "") -> None:
        while (entry := self._registry.vmodels.get(vmodel_id)) is not None:
            record = entry.record
            if owner and record.owner != owner:
                raise PreconditionFailedError(
                    f"vmodel '{vmodel_id}' is owned by {record.owner!r}, not {owner!r}"
                )
            if await self._registry.delete_vmodel(vmodel_id, expected_revision=entry.revision):
                log.info("deleted vmodel %s", vmodel_id)
                task = self._transitions.pop(vmodel_id, None)
                if task is not None:
                    await _tasks.cancel_and_wait(task)
                await self._collect_unreferenced(record.active_model_id, record.target_model_id)
                return

    async def _collect_unreferenced(self, *model_ids: str) -> None:
        """Delete auto-delete models that no vmodel uses any more."""
        for model_id in dict.fromkeys(model_ids):
            record = self._registry.model(model_id)
            if (
                record is not None
                and record.auto_delete
                and not self._registry.referencing_vmodels(model_id)
            ):
                await self._delete_model(model_id)

    def _kick_transition(self, vmodel_id: str, *, load_now: bool = False) -> None:
        record = self._registry.vmodel(vmodel_id)
        if record is None or not record.transitioning:
            return
        running = self._transitions.get(vmodel_id)
        if running is not None and not running.done():
            return
        if self.cache.failure(record.target_model_id) is not None:
            return  # TRANSITION_FAILED until the failure expires
        task = _tasks.start_supervised(
            self._transition(vmodel_id, load_now=load_now), name=f"transition:{vmodel_id}"
        )
        self._transitions[vmodel_id] = task

    async def _transition(self, vmodel_id: str, *, load_now: bool) -> None:
        """Load the target (when the active model is loaded, or asked to),
        then switch the alias to it."""
        record = self._registry.vmodel(vmodel_id)
        if record is None or not record.transitioning:
            return
        target = record.target_model_id
        if load_now or self.cache.is_loaded(record.active_model_id):
            try:
                await self.cache.ensure_loaded(self._spec(target), last_used_ms=self.now_ms())
            except MeshServeError as exc:
                log.warning("vmodel %s: target %s failed to load: %s", vmodel_id, target, exc)
                return
        while (entry := self._registry.vmodels.get(vmodel_id)) is not None:
            current = entry.record
            if current.target_model_id != target or not current.transitioning:
                return
            switched = VModelRecord(
                vmodel_id=vmodel_id,
                active_model_id=target,
                target_model_id=target,
                owner=current.owner,
                extra=current.extra,
            )
            if await self._registry.update_vmodel(switched, expected_revision=entry.revision):
                log.info("vmodel %s now serves %s", vmodel_id, target)
                await self._collect_unreferenced(current.active_model_id)
                return

    async def _janitor(self, interval_s: float) -> None:
        """Retry transitions whose target failure has expired."""
        while True:
            await asyncio.sleep(interval_s)
            for vmodel_id in list(self._registry.vmodels):
                self._kick_transition(vmodel_id)
