"""One meshserve instance: a small facade over its parts.

- ``_router.Router``: the request path (resolve, route, serve here or
  forward, metering). The facade's ``resolve``/``infer``/... are its.
- ``_copies.Copies``: where copies are and go (placement, loads here or on
  a peer, ensure available, drain's moves).
- ``_models.Models``: model management (register, unregister, status, list).
- ``_vmodels.VModelTable``: vmodels and their transitions.
- ``_membership.Membership`` publishes ``_own_records.OwnRecords`` under the
  instance's lease; ``_upkeep.Upkeep`` runs the periodic passes.

Building an instance starts nothing; :meth:`Instance.running` (or the
:meth:`Instance.open` factory) joins the mesh and starts the loops. Its
lifecycle is one :class:`InstanceState`: STARTING -> SERVING -> LAME_DUCK ->
DRAINING -> STOPPED.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from meshserve._clock import Clock, SystemClock
from meshserve._ids import InstanceId, ModelId
from meshserve.errors import MeshServeError
from meshserve.mesh._cache import ArtifactPuller, ModelCache
from meshserve.mesh._instance_state import InstanceState
from meshserve.mesh._mesh_records import MeshRecords
from meshserve.mesh._parts import Parts, build_parts
from meshserve.mesh._peers import PeerLink
from meshserve.mesh._status import ModelState, ModelStatus, ModelSummary, VModelStatus
from meshserve.mesh._upkeep import Upkeep
from meshserve.metrics import MetricsRecorder, NullMetrics
from meshserve.payloads import NO_PAYLOADS, PayloadSink
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import NO_HEADERS, RoutingHeaders, ServerInfo
from meshserve.registry import InstanceRecord, Registry
from meshserve.runtime import Runtime
from meshserve.settings import CacheSettings, LimitsSettings, MeshSettings
from meshserve.storage import PullProgress

__all__ = ["Instance", "PeerLink"]


class Instance:
    """A serving instance over one runtime. Open it with :meth:`open`."""

    def __init__(
        self,
        *,
        parts: Parts,
        registry: Registry,
        cache: ModelCache,
        mesh: MeshSettings,
        clock: Clock,
        metrics: MetricsRecorder,
    ) -> None:
        """Over parts from :func:`build_parts`; nothing runs until :meth:`running`."""
        self.instance_id = parts.own.instance_id
        self.mesh_settings = mesh
        self._registry = registry
        self._cache = cache
        self._metrics = metrics
        self._clock = clock
        self._lifecycle = parts.lifecycle
        self._background = parts.background
        self._rates = parts.rates
        self._own = parts.own
        self._view = parts.view
        self._membership = parts.membership
        self._quotas = parts.quotas
        self._copies = parts.copies
        self._models = parts.models
        self._vmodels = parts.vmodels
        self._router = parts.router

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
        data_address: str = "",
        labels: tuple[str, ...] = (),
        peers: PeerLink | None = None,
        metrics: MetricsRecorder | None = None,
        puller: ArtifactPuller | None = None,
        clock: Clock | None = None,
        limits: LimitsSettings | None = None,
        payloads: PayloadSink = NO_PAYLOADS,
    ) -> AsyncIterator[Instance]:
        """Build an instance over an open registry and a started runtime
        (its cache sized by the runtime's status) and run it."""
        clock = clock or SystemClock()
        metrics = metrics or NullMetrics()
        cache = ModelCache(
            runtime=runtime,
            status=await runtime.status(),
            settings=settings,
            clock=clock,
            metrics=metrics,
            puller=puller,
        )
        mesh = mesh or MeshSettings()
        parts = build_parts(
            instance_id=InstanceId(instance_id),
            registry=registry,
            runtime=runtime,
            cache=cache,
            settings=settings,
            mesh=mesh,
            clock=clock,
            metrics=metrics,
            address=address,
            data_address=data_address,
            labels=labels,
            peers=peers,
            limits=limits,
            payloads=payloads,
        )
        instance = cls(
            parts=parts, registry=registry, cache=cache, mesh=mesh, clock=clock, metrics=metrics
        )
        async with instance.running():
            yield instance

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Join the mesh (returns once this instance's records are written)
        and run the janitor, the rate checks and (when elected) the reaper;
        leaving the block stops everything and closes the cache."""
        registry, cache = self._registry, self._cache
        upkeep = Upkeep(
            instance_id=self.instance_id,
            registry=registry,
            cache=cache,
            copies=self._copies,
            view=self._view,
            rates=self._rates,
            vmodels=self._vmodels,
            own=self._own,
            membership=self._membership,
            metrics=self._metrics,
            clock=self._clock,
            settings=self.mesh_settings,
            spawn=self._background.spawn,
        )
        cache.listener = self._republish_copy
        cache.quota = self._quotas
        registry.model_deleted.append(self._model_deleted)
        try:
            async with self._membership.running(), upkeep.running():
                yield
                self._lifecycle.advance(InstanceState.STOPPED)
        finally:
            self._lifecycle.advance(InstanceState.STOPPED)
            registry.model_deleted.remove(self._model_deleted)
            await self._background.close()
            await self._vmodels.close()
            await cache.close()

    def _republish_copy(self, model_id: str, state: ModelState) -> None:
        self._membership.copy_changed(model_id, self._own.copy_record(model_id, state))

    def _model_deleted(self, model_id: str) -> None:
        if self._cache.state(model_id) is not ModelState.NOT_LOADED:
            self._background.spawn(self._cache.drop(model_id), name=f"drop:{model_id}")

    # -- lifecycle ---------------------------------------------------------------

    @property
    def state(self) -> InstanceState:
        return self._lifecycle.state

    def mark_ready(self) -> None:
        """Start answering readiness probes with "ready" (once set up)."""
        self._lifecycle.advance(InstanceState.SERVING)

    def server_ready(self) -> bool:
        return self._lifecycle.ready

    async def lame_duck(self) -> None:
        """SIGTERM: report not ready and tell the other instances (this
        record's ``shutting_down``) to route new work elsewhere unless this
        instance holds the only copy. Requests keep being served."""
        self._lifecycle.advance(InstanceState.LAME_DUCK)
        await self._publish_state()

    async def drain(self) -> None:
        """After the lame duck: stop taking new copies, have recently used
        models loaded elsewhere, within ``drain_deadline_s``. Requests keep
        being served."""
        self._lifecycle.advance(InstanceState.DRAINING)
        await self._publish_state()
        await self._copies.move_recent_elsewhere()

    async def _publish_state(self) -> None:
        # Now rather than at the next publish interval; the store being
        # unreachable must not stop the stop (the record follows later).
        with contextlib.suppress(MeshServeError):
            await self._membership.publish_now()

    async def leave(self) -> None:
        """Leave the mesh now: every record of this instance goes at once."""
        await self._membership.leave()

    def describe(self) -> InstanceRecord:
        """This instance's record, as published in the store."""
        return self._own.describe()

    def mesh_records(self) -> MeshRecords:
        """The mesh as the registry has it now, for a status view."""
        registry = self._registry
        own = self.describe()
        others = (entry.record for _, entry in sorted(registry.instances.items()))
        models = tuple(entry.record for _, entry in sorted(registry.models.items()))
        rates = {m.model_id: self._rates.rpm(m.model_id) for m in models}
        return MeshRecords(
            instances=(own, *(r for r in others if r.instance_id != own.instance_id)),
            models=models,
            copies=tuple(c for m in models for c in registry.copies(m.model_id).values()),
            rpm_here={model_id: rpm for model_id, rpm in rates.items() if rpm},
        )

    async def on_runtime_restart(self) -> None:
        """The runtime came back empty: reload what was loaded here."""
        await self._copies.reload_lost()

    def on_pull_progress(self, progress: PullProgress) -> None:
        """A pull from storage progressed (shown by ``models list``)."""
        self._cache.on_pull_progress(progress)

    # -- requests (server.InferenceBackend, through the router) ----------------

    def resolve(self, name: str, headers: RoutingHeaders) -> ModelId:
        return self._router.resolve(name, headers)

    # The router's coroutines themselves, not one more around each: every
    # request passes here.
    def infer(
        self, model_id: str, request: InferenceRequest, *, headers: RoutingHeaders = NO_HEADERS
    ) -> Coroutine[Any, Any, InferenceResponse]:
        return self._router.infer(model_id, request, headers=headers)

    def infer_grpc(
        self, model_id: str, body: bytes, *, headers: RoutingHeaders = NO_HEADERS
    ) -> Coroutine[Any, Any, bytes]:
        return self._router.infer_grpc(model_id, body, headers=headers)

    async def model_metadata(
        self, model_id: str, headers: RoutingHeaders = NO_HEADERS
    ) -> ModelMetadata:
        return await self._router.model_metadata(model_id, headers)

    def model_ready(self, model_id: str) -> bool:
        return self._router.model_ready(model_id)

    def server_info(self) -> ServerInfo:
        return self._router.server_info()

    # -- models (the management API) -----------------------------------------

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
        return await self._models.register_model(
            model_id,
            type=type,
            path=path,
            key=key,
            load_now=load_now,
            sync=sync,
            last_used_ms=last_used_ms,
            auto_delete=auto_delete,
        )

    async def unregister_model(self, model_id: str) -> None:
        await self._models.unregister_model(model_id)

    def model_status(self, model_id: str) -> ModelStatus:
        return self._models.model_status(model_id)

    async def ensure_loaded(
        self,
        model_id: str,
        *,
        last_used_ms: int = 0,
        sync: bool = False,
        headers: RoutingHeaders = NO_HEADERS,
    ) -> ModelStatus:
        return await self._models.ensure_loaded(
            model_id, last_used_ms=last_used_ms, sync=sync, headers=headers
        )

    def list_models(self, *, only: str | None = None) -> list[ModelSummary]:
        return self._models.list_models(only=only)

    async def ensure_available(self, model_id: str, *, sync: bool, last_used_ms: int = 0) -> None:
        """Have a copy loaded (or loading) somewhere; with ``sync``, wait for it."""
        await self._copies.ensure_available(model_id, sync=sync, last_used_ms=last_used_ms)

    def can_place(self, model_id: str) -> bool:
        """Whether some live instance could take a new copy of the model now."""
        return self._copies.can_place(model_id)

    # -- vmodels ---------------------------------------------------------------

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
        return await self._vmodels.set(
            vmodel_id,
            target_model_id=target_model_id,
            owner=owner,
            update_only=update_only,
            model_type=model_type,
            model_path=model_path,
            model_key=model_key,
            auto_delete_target=auto_delete_target,
            load_now=load_now,
            force=force,
            sync=sync,
            expected_target_model_id=expected_target_model_id,
        )

    async def delete_vmodel(self, vmodel_id: str, *, owner: str = "") -> None:
        await self._vmodels.delete(vmodel_id, owner=owner)

    def vmodel_status(self, vmodel_id: str, *, owner: str = "") -> VModelStatus:
        return self._vmodels.status(vmodel_id, owner=owner)

    def list_vmodels(self) -> list[tuple[str, VModelStatus]]:
        return self._vmodels.list()
