"""One meshserve instance: registrations, routing and the cache.

The instance implements the front ends' ``InferenceBackend`` and the
management API's model operations; its vmodels are ``instance.vmodels``
(``_vmodels.VModelTable``). Routing reads only the registry's in-memory
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
)
from meshserve.mesh._vmodels import VModelTable
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import RoutingHeaders, ServerInfo
from meshserve.registry import ModelRecord, Registry
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
        self.vmodels = VModelTable(registry=registry, cache=cache, models=self)
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
            instance.vmodels.retry_transitions(janitor_interval_s), name="instance-janitor"
        )
        try:
            yield instance
        finally:
            instance._ready = False
            await _tasks.cancel_and_wait(janitor)
            await instance.vmodels.close()
            await cache.close()

    def now_ms(self) -> int:
        return int(self._clock.time() * 1000)

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

    def spec(self, model_id: str) -> ModelSpec:
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
                await self.cache.ensure_loaded(self.spec(model_id), last_used_ms=self.now_ms())
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
                await self.cache.ensure_loaded(self.spec(model_id), last_used_ms=self.now_ms())

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
            await self.load_now(model_id, sync=sync)
        return self.model_status(model_id)

    async def load_now(self, model_id: str, *, sync: bool) -> None:
        record = self._registry.model(model_id)
        assert record is not None
        future = self.cache.start_load(self.spec(model_id), last_used_ms=record.last_used_ms)
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
        await self.delete_model(model_id)

    async def delete_model(self, model_id: str) -> None:
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
        future = self.cache.start_load(self.spec(model_id), last_used_ms=used)
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
