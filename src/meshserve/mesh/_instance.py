"""One meshserve instance: registrations, routing and the cache.

The instance implements the front ends' ``InferenceBackend`` and the
management API's model operations; its vmodels are ``instance.vmodels``
(``_vmodels.VModelTable``). Routing reads only the registry's in-memory
mirror: a model loaded here is served here; one loaded on another instance
is forwarded there (raw bytes, over that instance's internal port); one
loaded nowhere goes where placement says, which loads it, then serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from meshserve import __version__, _tasks
from meshserve._clock import Clock, SystemClock
from meshserve.control import redact_uri, redact_uris
from meshserve.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    MeshServeError,
    ModelLoadError,
    ModelNotFoundError,
    PeerUnreachableError,
    PreconditionFailedError,
    UnavailableError,
    quote_client_value,
)
from meshserve.mesh._cache import ArtifactPuller, ModelCache
from meshserve.mesh._membership import Membership
from meshserve.mesh._mesh_view import LOADED, SERVING, MeshView
from meshserve.mesh._quotas import NamespaceQuotas
from meshserve.mesh._rates import RateTracker
from meshserve.mesh._status import (
    CopyInfo,
    ModelState,
    ModelStatus,
    ModelSummary,
)
from meshserve.mesh._upkeep import Upkeep
from meshserve.mesh._vmodels import VModelTable
from meshserve.metrics import MetricsRecorder, NullMetrics
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import (
    NO_HEADERS,
    Metadata,
    RoutingHeaders,
    ServerInfo,
    hop_metadata,
)
from meshserve.protocol.status import grpc_code
from meshserve.registry import CopyRecord, CopyState, InstanceRecord, ModelRecord, Registry
from meshserve.runtime import ModelSpec, Runtime
from meshserve.security import check_inference
from meshserve.settings import CacheSettings, LimitsSettings, MeshSettings

__all__ = ["Instance", "PeerLink"]

log = logging.getLogger(__name__)

T = TypeVar("T")

HOUR_MS = 3_600_000
# ModelMesh's registration timestamps: a proactive load never displaces a
# model used within the last hour; a plain registration ranks below that.
LOAD_NOW_AGE_MS = 1 * HOUR_MS
REGISTER_AGE_MS = 6 * HOUR_MS

_SERVER_EXTENSIONS = ("binary_tensor_data", "model_repository")

_RECORD_WAIT_S = 3.0
"""How long a forwarded request waits for this instance to see its model's
registration (the store's watch delivers it within milliseconds normally)."""

_COPY_STATES = {
    ModelState.LOADING: CopyState.LOADING,
    ModelState.LOADED: CopyState.LOADED,
    ModelState.LOADING_FAILED: CopyState.FAILED,
}
_MODEL_STATES = {v: k for k, v in _COPY_STATES.items()}


class PeerLink(Protocol):
    """Calls to other instances' internal ports (``protocol.peer.PeerClient``)."""

    async def infer(self, address: str, body: bytes, metadata: Metadata) -> bytes: ...

    async def infer_decoded(
        self, address: str, request: InferenceRequest, metadata: Metadata
    ) -> InferenceResponse: ...

    async def model_metadata(
        self, address: str, model_id: str, metadata: Metadata
    ) -> ModelMetadata: ...

    async def ensure_loaded(
        self, address: str, model_id: str, metadata: Metadata, *, sync: bool, last_used_ms: int
    ) -> None: ...


class Instance:
    """A serving instance over one runtime. Open it with :meth:`open`."""

    def __init__(
        self,
        *,
        instance_id: str,
        address: str,
        labels: tuple[str, ...],
        registry: Registry,
        runtime: Runtime,
        cache: ModelCache,
        settings: CacheSettings,
        mesh: MeshSettings,
        peers: PeerLink | None,
        metrics: MetricsRecorder,
        clock: Clock,
        limits: LimitsSettings | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.address = address
        self.labels = labels
        self._registry = registry
        self._runtime = runtime
        self.cache = cache
        self._settings = settings
        self.mesh_settings = mesh
        self._peers = peers
        self.metrics = metrics
        self._clock = clock
        self.vmodels = VModelTable(
            registry=registry, models=self, retire_delay_s=mesh.vmodel_retire_delay_s
        )
        self.rates = RateTracker(clock=clock, window_s=6 * mesh.rate_check_interval_s)
        self._ready = False
        self._shutting_down = False
        self._started_ms = self.now_ms()
        self.view = MeshView(
            registry=registry,
            instance_id=instance_id,
            settings=mesh,
            clock=clock,
            describe=self.describe,
            default_model_size=cache.default_size,
        )
        self._background: set[asyncio.Task[None]] = set()
        self.membership = Membership(
            store=registry.store,
            registry=registry,
            instance_id=instance_id,
            lease_ttl_s=mesh.lease_ttl_s,
            publish_interval_s=mesh.publish_interval_s,
            describe=self.describe,
            current_copies=self._local_copies,
        )
        cache.listener = self.republish_copy
        self.quotas = NamespaceQuotas(
            registry=registry, limits=limits or LimitsSettings(), metrics=metrics
        )
        cache.quota = self.quotas
        registry.model_deleted.append(self._model_deleted)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        *,
        instance_id: str,
        registry: Registry,
        runtime: Runtime,
        settings: CacheSettings,
        mesh: MeshSettings | None = None,
        address: str = "",
        labels: tuple[str, ...] = (),
        peers: PeerLink | None = None,
        metrics: MetricsRecorder | None = None,
        puller: ArtifactPuller | None = None,
        clock: Clock | None = None,
        limits: LimitsSettings | None = None,
    ) -> AsyncIterator[Instance]:
        """Run an instance over an open registry and a started runtime: join
        the mesh, and start the janitor, the rate checks and (when elected)
        the reaper."""
        clock = clock or SystemClock()
        metrics = metrics or NullMetrics()
        status = await runtime.status()
        cache = ModelCache(
            runtime=runtime,
            status=status,
            settings=settings,
            clock=clock,
            metrics=metrics,
            puller=puller,
        )
        instance = cls(
            instance_id=instance_id,
            address=address,
            labels=labels,
            registry=registry,
            runtime=runtime,
            cache=cache,
            settings=settings,
            mesh=mesh or MeshSettings(),
            peers=peers,
            metrics=metrics,
            clock=clock,
            limits=limits,
        )
        upkeep = Upkeep(instance=instance, registry=registry)
        try:
            async with instance.membership.running(), upkeep.running():
                yield instance
                instance._ready = False
        finally:
            instance._ready = False
            registry.model_deleted.remove(instance._model_deleted)
            for task in list(instance._background):
                await _tasks.cancel_and_wait(task)
            await instance.vmodels.close()
            await cache.close()

    def now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    def spawn(self, coro: Awaitable[object], name: str) -> None:
        """Run ``coro`` in the background until it ends or the instance closes."""

        async def run() -> None:
            with contextlib.suppress(MeshServeError):
                await coro

        task = _tasks.start_supervised(run(), name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- what the mesh sees of this instance ---------------------------------

    def describe(self) -> InstanceRecord:
        """This instance's record, as published in the store."""
        lru = self.cache.lru
        loaded = self.cache.loaded_ids()
        oldest = lru.oldest_last_used_ms()
        return InstanceRecord(
            instance_id=self.instance_id,
            address=self.address,
            capacity_bytes=lru.capacity_bytes,
            used_bytes=lru.used_bytes,
            model_count=len(loaded),
            lru_oldest_ms=oldest,
            loading_slots=self.cache.loading_slots,
            loading_count=self.cache.loading_count,
            # Whole minutes' worth, so that small jitter does not republish.
            rpm=self.rates.total_rpm() // 10 * 10,
            labels=self.labels,
            shutting_down=self._shutting_down,
            started_ms=self._started_ms,
            version=__version__,
        )

    @staticmethod
    def copy_state(state: ModelState) -> CopyState | None:
        """How a copy in ``state`` is published (None: it is not)."""
        return _COPY_STATES.get(state)

    def _copy_record(self, model_id: str, state: ModelState) -> CopyRecord | None:
        copy_state = self.copy_state(state)
        if copy_state is None:
            return None
        error = ""
        error_type = ""
        size_bytes = 0
        time_ms = self.now_ms()
        if copy_state is CopyState.FAILED:
            failure = self.cache.failure(model_id)
            if failure is None:
                return None
            # Published to every instance and shown in statuses.
            error, error_type = redact_uris(str(failure.error)), type(failure.error).__name__
            time_ms = int(failure.time_s * 1000)
        elif copy_state is CopyState.LOADED:
            entry = self.cache.lru.get(model_id)
            if entry is not None and entry.loaded_at_ms:
                time_ms = entry.loaded_at_ms
            size_bytes = entry.size_bytes if entry is not None else 0
        return CopyRecord(
            model_id=model_id,
            instance_id=self.instance_id,
            state=copy_state,
            time_ms=time_ms,
            error=error,
            error_type=error_type,
            size_bytes=size_bytes,
        )

    def republish_copy(self, model_id: str, state: ModelState) -> None:
        """Publish this instance's copy of ``model_id`` as being in ``state``."""
        self.membership.copy_changed(model_id, self._copy_record(model_id, state))

    def _local_copies(self) -> list[CopyRecord]:
        copies = []
        for model_id in self._registry.models:
            copy = self._copy_record(model_id, self.cache.state(model_id))
            if copy is not None:
                copies.append(copy)
        return copies

    def _model_deleted(self, model_id: str) -> None:
        if self.cache.state(model_id) is not ModelState.NOT_LOADED:
            self.spawn(self.cache.drop(model_id), name=f"drop:{model_id}")

    # -- the mesh as this instance sees it ------------------------------------

    def live_instances(self) -> list[InstanceRecord]:
        return self.view.live_instances()

    def remote_copies(self, model_id: str, *, states: frozenset[CopyState]) -> list[CopyRecord]:
        return self.view.remote_copies(model_id, states=states)

    def copy_count(self, model_id: str) -> int:
        """Loaded copies in the mesh, this instance's included."""
        here = 1 if self.cache.is_loaded(model_id) else 0
        return here + len(self.view.remote_copies(model_id, states=LOADED))

    def mesh_failure(self, model_id: str) -> MeshServeError | None:
        """The model's unexpired load failure here or on any live instance."""
        local = self.cache.failure(model_id)
        if local is not None:
            return local.error
        return self.view.remote_failure(
            model_id, expiry_s=self._settings.load_failure_expiry_seconds
        )

    def _note_placement(self, instance_id: str, model_id: str) -> None:
        entry = self.cache.lru.get(model_id)
        self.view.note_placement(
            instance_id, entry.size_bytes if entry is not None else self.cache.default_size
        )

    # -- routing (InferenceBackend) -----------------------------------------

    def resolve(self, name: str, headers: RoutingHeaders) -> str:
        model_id = self._resolve(name, headers)
        # With authentication on, a credential limited to some models may
        # use a vmodel only if it may use the model behind it too.
        check_inference(model_id)
        return model_id

    def _resolve(self, name: str, headers: RoutingHeaders) -> str:
        if headers.model_id and headers.vmodel_id:
            raise InvalidRequestError(
                "give either the mm-model-id or the mm-vmodel-id header, not both"
            )
        if headers.vmodel_id:
            vmodel = self._registry.vmodel(headers.vmodel_id)
            if vmodel is None:
                raise ModelNotFoundError(
                    f"vmodel {quote_client_value(headers.vmodel_id)} is not registered"
                )
            return vmodel.active_model_id
        if headers.model_id and headers.hops:
            # Forwarded by another instance, which saw the registration; this
            # mirror may not have yet (see _await_record).
            return headers.model_id
        if headers.model_id:
            if self._registry.model(headers.model_id) is None:
                raise ModelNotFoundError(
                    f"model {quote_client_value(headers.model_id)} is not registered"
                )
            return headers.model_id
        vmodel = self._registry.vmodel(name)
        if vmodel is not None:
            return vmodel.active_model_id
        if self._registry.model(name) is not None:
            return name
        raise ModelNotFoundError(f"model {quote_client_value(name)} is not registered")

    def spec(self, model_id: str) -> ModelSpec:
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
        return ModelSpec(
            model_id=model_id, model_type=record.type, model_path=record.path, model_key=record.key
        )

    async def _serve_here(self, model_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call`` on this instance's copy, loading it first if needed."""
        for attempt in range(2):
            previous_use = self._last_used_ms(model_id)
            if not self.cache.is_loaded(model_id):
                started = self._clock.monotonic()
                await self.cache.ensure_loaded(self.spec(model_id), last_used_ms=self.now_ms())
                self.metrics.observe_cache_miss((self._clock.monotonic() - started) * 1000)
            try:
                async with self.cache.in_use(model_id):
                    started = self._clock.monotonic()
                    result = await call()
                    self.metrics.observe_invoke(
                        (self._clock.monotonic() - started) * 1000, method="ModelInfer", code="OK"
                    )
            except ModelNotFoundError:
                # Unregistered meanwhile: report that. Otherwise the runtime
                # lost the model (it restarted): account for it and reload once.
                if attempt or self._registry.model(model_id) is None:
                    raise
                log.warning("runtime no longer has %s; reloading it", model_id)
                self.cache.forget(model_id)
                continue
            self.rates.count(model_id)
            self._maybe_second_copy(model_id, previous_use)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _last_used_ms(self, model_id: str) -> int:
        entry = self.cache.lru.get(model_id)
        return entry.last_used_ms if entry is not None else 0

    def _maybe_second_copy(self, model_id: str, previous_use_ms: int) -> None:
        """ModelMesh's second copy: a single-copy model used again a while
        (7 to 40 minutes) after its previous use."""
        if not previous_use_ms:
            return
        age_s = (self.now_ms() - previous_use_ms) / 1000
        settings = self.mesh_settings
        if not settings.second_copy_min_age_s <= age_s <= settings.second_copy_max_age_s:
            return
        if self.copy_count(model_id) == 1:
            log.info("%s used again after %.0f s: adding a second copy", model_id, age_s)
            self.spawn(self.add_copy(model_id), name=f"second-copy:{model_id}")

    async def _route(
        self,
        model_id: str,
        headers: RoutingHeaders,
        local: Callable[[], Awaitable[T]],
        remote: Callable[[str, Metadata], Awaitable[T]],
    ) -> T:
        """Serve here, forward to a copy elsewhere, or place a new copy."""
        if headers.hops:
            await self._await_record(model_id)
        if headers.dest is not None:
            # Another instance chose this one to load and serve the model.
            return await self._serve_here(model_id, local)
        exclude = set(headers.exclude)
        tried: list[str] = []
        for _ in range(self.mesh_settings.max_attempts):
            if self.instance_id not in exclude and (
                self.cache.is_loaded(model_id) or self.cache.is_loading(model_id)
            ):
                return await self._serve_here(model_id, local)
            target, dest = self._next_target(model_id, exclude)
            if target is None:
                break
            if target.instance_id == self.instance_id:
                try:
                    return await self._serve_here(model_id, local)
                except UnavailableError as exc:
                    # No room here after all: let placement try elsewhere.
                    tried.append(f"{self.instance_id}: {exc}")
                    exclude.add(self.instance_id)
                    continue
            hops = headers.hops + 1
            if hops >= self.mesh_settings.max_attempts:
                tried.append(f"hop limit ({self.mesh_settings.max_attempts}) reached")
                break
            metadata = hop_metadata(
                model_id=model_id,
                hops=hops,
                exclude=sorted(exclude | {self.instance_id}),
                dest=dest,
            )
            if dest is not None:
                self._note_placement(target.instance_id, model_id)
            peer = target.instance_id
            try:
                with self.view.forwarding(peer):
                    return await remote(target.address, metadata)
            except PeerUnreachableError as exc:
                self.view.mark_unreachable(peer)
                tried.append(f"{peer}: {exc}")
            except UnavailableError as exc:
                tried.append(f"{peer}: {exc}")
            exclude.add(peer)
        detail = "; ".join(tried) if tried else "no instance can take it"
        raise UnavailableError(
            f"model {quote_client_value(model_id)} could not be served: {detail}"
        )

    async def _await_record(self, model_id: str) -> None:
        """Wait (briefly) for this mirror to catch up with a registration
        another instance has seen: its watch lags the store by milliseconds."""
        deadline = self._clock.monotonic() + _RECORD_WAIT_S
        while self._registry.model(model_id) is None:
            if self._clock.monotonic() >= deadline:
                raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
            await asyncio.sleep(0.02)

    def _next_target(
        self, model_id: str, exclude: set[str]
    ) -> tuple[InstanceRecord | None, str | None]:
        """Where to send a request for a model not loaded here: a live copy,
        else a placement (with the chosen instance as ``dest``)."""
        copy = self.view.pick_copy(model_id, exclude)
        if copy is not None:
            return copy, None
        failure = self.mesh_failure(model_id)
        if failure is not None:
            raise failure
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
        target = self.view.place(record, exclude)
        if target is None:
            return None, None
        dest = None if target.instance_id == self.instance_id else target.instance_id
        return target, dest

    async def infer(
        self, model_id: str, request: InferenceRequest, headers: RoutingHeaders = NO_HEADERS
    ) -> InferenceResponse:
        peers = self._peers
        return await self._measured(
            "ModelInfer",
            self._route(
                model_id,
                headers,
                lambda: self._runtime.infer(model_id, request),
                lambda address, metadata: _need(peers).infer_decoded(address, request, metadata),
            ),
        )

    async def _measured(self, method: str, work: Awaitable[T], *, size: int = 0) -> T:
        """Run an API request, counting it (ModelMesh's api_request metrics)."""
        started = self._clock.monotonic()
        code = "OK"
        try:
            result = await work
        except MeshServeError as exc:
            code = grpc_code(exc).name
            raise
        finally:
            self.metrics.observe_api_request(
                (self._clock.monotonic() - started) * 1000, method=method, code=code
            )
            if size:
                self.metrics.observe_request_size(size, method=method, code=code)
        if isinstance(result, bytes):
            self.metrics.observe_response_size(len(result), method=method, code=code)
        return result

    async def infer_grpc(
        self, model_id: str, body: bytes, headers: RoutingHeaders = NO_HEADERS
    ) -> bytes:
        peers = self._peers
        if headers.hops:
            return await self._infer_grpc(model_id, body, headers, peers)
        return await self._measured(
            "ModelInfer", self._infer_grpc(model_id, body, headers, peers), size=len(body)
        )

    async def _infer_grpc(
        self, model_id: str, body: bytes, headers: RoutingHeaders, peers: PeerLink | None
    ) -> bytes:
        return await self._route(
            model_id,
            headers,
            lambda: self._runtime.infer_grpc(model_id, body),
            lambda address, metadata: _need(peers).infer(address, body, metadata),
        )

    async def model_metadata(
        self, model_id: str, headers: RoutingHeaders = NO_HEADERS
    ) -> ModelMetadata:
        peers = self._peers
        return await self._route(
            model_id,
            headers,
            lambda: self._runtime.metadata(model_id),
            lambda address, metadata: _need(peers).model_metadata(address, model_id, metadata),
        )

    def can_place(self, model_id: str) -> bool:
        """Whether some live instance could take a new copy of the model now."""
        record = self._registry.model(model_id)
        return record is not None and self.view.place(record, set()) is not None

    def model_ready(self, model_id: str) -> bool:
        if self.cache.is_loaded(model_id):
            return True
        return bool(self.remote_copies(model_id, states=LOADED))

    def server_ready(self) -> bool:
        return self._ready and not self._shutting_down

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

    # -- copies ----------------------------------------------------------------

    async def add_copy(self, model_id: str, *, sync: bool = False) -> bool:
        """Load one more copy of a model on the best instance without one."""
        record = self._registry.model(model_id)
        if record is None:
            return False
        holders = {c.instance_id for c in self.remote_copies(model_id, states=SERVING)}
        if self.cache.is_loaded(model_id) or self.cache.is_loading(model_id):
            holders.add(self.instance_id)
        if self._shutting_down:
            holders.add(self.instance_id)
        target = self.view.place(record, holders)
        if target is None or target.instance_id in holders:
            return False
        await self._load_on(target, model_id, sync=sync, last_used_ms=self.now_ms())
        return True

    async def _load_on(
        self, target: InstanceRecord, model_id: str, *, sync: bool, last_used_ms: int
    ) -> None:
        if target.instance_id == self.instance_id:
            await self._load_locally(model_id, sync=sync, last_used_ms=last_used_ms)
            return
        self._note_placement(target.instance_id, model_id)
        metadata = hop_metadata(
            model_id=model_id, hops=1, exclude=(self.instance_id,), dest=target.instance_id
        )
        try:
            await _need(self._peers).ensure_loaded(
                target.address, model_id, metadata, sync=sync, last_used_ms=last_used_ms
            )
        except PeerUnreachableError:
            self.view.mark_unreachable(target.instance_id)
            raise

    async def ensure_available(self, model_id: str, *, sync: bool, last_used_ms: int = 0) -> None:
        """Make sure a copy is loaded (or loading) somewhere; load one where
        placement says if none is. With ``sync``, wait for it."""
        used = last_used_ms or self.now_ms()
        exclude: set[str] = set()
        reasons: list[str] = []
        for _ in range(self.mesh_settings.max_attempts):
            if self.cache.is_loaded(model_id) or self.cache.is_loading(model_id):
                self.cache.lru.touch(model_id, used)
                if sync:
                    await self.cache.ensure_loaded(self.spec(model_id), last_used_ms=used)
                return
            if self.remote_copies(model_id, states=LOADED):
                return
            target, _ = self._next_target(model_id, exclude)
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
        await self._await_record(model_id)
        if self._shutting_down:
            raise UnavailableError(f"instance {self.instance_id} is shutting down")
        used = last_used_ms or self.now_ms()
        self.cache.lru.touch(model_id, used)
        await self._load_locally(model_id, sync=sync, last_used_ms=used)

    async def _load_locally(self, model_id: str, *, sync: bool, last_used_ms: int) -> None:
        """Start loading this instance's copy; with ``sync``, wait for it
        (a waiter leaving does not cancel the load others may share)."""
        future = self.cache.start_load(self.spec(model_id), last_used_ms=last_used_ms)
        if sync:
            await asyncio.shield(future)

    # -- models (management API) --------------------------------------------

    def model_status(self, model_id: str) -> ModelStatus:
        if self._registry.model(model_id) is None:
            return ModelStatus(ModelState.NOT_FOUND)
        copies: list[CopyInfo] = []
        errors: list[str] = []
        local_state = self.cache.state(model_id)
        local = self._copy_record(model_id, local_state)
        records = [local] if local is not None else []
        records += self.remote_copies(
            model_id, states=frozenset({CopyState.LOADING, CopyState.LOADED, CopyState.FAILED})
        )
        expiry_ms = self._settings.load_failure_expiry_seconds * 1000
        now = self.now_ms()
        for copy in records:
            if copy.state is CopyState.FAILED:
                if now - copy.time_ms >= expiry_ms:
                    continue
                errors.append(copy.error)
            copies.append(CopyInfo(copy.instance_id, _MODEL_STATES[copy.state], copy.time_ms))
        states = {c.state for c in copies}
        for state in (ModelState.LOADED, ModelState.LOADING, ModelState.LOADING_FAILED):
            if state in states:
                return ModelStatus(state, tuple(errors), tuple(copies))
        return ModelStatus(ModelState.NOT_LOADED)

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
            raise InvalidRequestError(
                f"model {quote_client_value(model_id)}: modelInfo.type must not be empty"
            )
        try:
            self.cache.check_location(model_id=model_id, model_path=path, model_key=key)
        except InvalidRequestError as exc:
            raise InvalidRequestError(
                f"model {quote_client_value(model_id)}: {exc.message}"
            ) from None
        existing = self._registry.model(model_id)
        if existing is not None:
            if not existing.same_model(type=type, path=path, key=key):
                raise AlreadyExistsError(
                    f"model {quote_client_value(model_id)} is already registered with different "
                    "parameters "
                    f"(type {existing.type!r}, path {redact_uri(existing.path)!r})"
                )
        else:
            self.quotas.check_registration(model_id)
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
            log.info("registered model %s (%s, %s)", model_id, type, redact_uri(path))
        if load_now:
            await self.load_now(model_id, sync=sync)
        return self.model_status(model_id)

    async def load_now(self, model_id: str, *, sync: bool) -> None:
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
        try:
            await self.ensure_available(model_id, sync=sync, last_used_ms=record.last_used_ms)
        except ModelLoadError:
            pass  # recorded; the status reports it
        except UnavailableError as exc:
            log.warning("cannot load %s now: %s", model_id, exc)

    async def unregister_model(self, model_id: str) -> None:
        """Delete a model; no effect if unknown; refused while a vmodel uses it."""
        users = self._registry.referencing_vmodels(model_id)
        if users:
            raise PreconditionFailedError(
                f"model {quote_client_value(model_id)} is used by vmodel(s) {', '.join(users)}; "
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
        self,
        model_id: str,
        *,
        last_used_ms: int = 0,
        sync: bool = False,
        headers: RoutingHeaders = NO_HEADERS,
    ) -> ModelStatus:
        if headers.dest is not None:
            await self._await_record(model_id)
        if self._registry.model(model_id) is None:
            return ModelStatus(ModelState.NOT_FOUND)
        if headers.dest is not None:
            # Placed here by another instance: a failure goes back to it as
            # the error itself.
            await self.load_here(model_id, sync=sync, last_used_ms=last_used_ms)
            return self.model_status(model_id)
        with contextlib.suppress(ModelLoadError):  # recorded; the status reports it
            await self.ensure_available(model_id, sync=sync, last_used_ms=last_used_ms)
        return self.model_status(model_id)

    def list_models(self) -> list[ModelSummary]:
        """Every registered model: the mesh's view of it (the same from
        every instance: copies, size and last use come from the registry)
        and this instance's own counters."""
        summaries = []
        for model_id, entry in sorted(self._registry.models.items()):
            record = entry.record
            stats = self.cache.stats.get(model_id)
            copies = self.view.copies(model_id, states=LOADED)
            summaries.append(
                ModelSummary(
                    model_id=model_id,
                    type=record.type,
                    path=record.path,
                    status=self.model_status(model_id),
                    copies=len(copies),
                    size_bytes=max((c.size_bytes for c in copies), default=0),
                    last_used_ms=record.last_requested_ms,
                    load_count=stats.loads if stats else 0,
                    eviction_count=stats.evictions if stats else 0,
                    last_load_ms=stats.last_load_ms if stats else 0,
                    auto_delete=record.auto_delete,
                    vmodels=tuple(self._registry.referencing_vmodels(model_id)),
                    pull_ms=stats.pull_ms if stats else 0,
                    pull_bytes=stats.pull_bytes if stats else 0,
                    pull_total_bytes=stats.pull_total_bytes if stats else 0,
                    pulled_from_cache=stats.pulled_from_cache if stats else False,
                )
            )
        return summaries

    # -- leaving -------------------------------------------------------------

    async def drain(self) -> None:
        """SIGTERM: stop taking new copies, have recently used models loaded
        elsewhere, within ``drain_deadline_s``. Requests keep being served."""
        self._shutting_down = True
        self._ready = False
        with contextlib.suppress(MeshServeError):
            await self.membership.publish_now()
        recent_ms = self.now_ms() - int(self.mesh_settings.drain_recent_s * 1000)
        movers = [
            model_id
            for model_id in self.cache.loaded_ids()
            if self._last_used_ms(model_id) >= recent_ms
            and self._registry.model(model_id) is not None
            and not any(
                not self.view.is_draining(c.instance_id)
                for c in self.remote_copies(model_id, states=LOADED)
            )
        ]
        if not movers:
            return
        others = [
            r
            for r in self.live_instances()
            if r.instance_id != self.instance_id and not r.shutting_down
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
        done, pending = await asyncio.wait(tasks, timeout=self.mesh_settings.drain_deadline_s)
        for task in pending:
            task.cancel()
        moved = sum(1 for task in done if task.result())
        log.info(
            "drained: %d moved, %d not moved (no room or failed), %d not in time",
            moved,
            len(done) - moved,
            len(pending),
        )


def _need(peers: PeerLink | None) -> PeerLink:
    if peers is None:
        raise UnavailableError("this instance has no link to other instances")
    return peers
