"""Model management (the management API's model calls): register,
unregister, status, load now, list.

A model's status is the mesh's: this instance's copy plus every live
instance's published copy records, failures until they expire.
"""

from __future__ import annotations

import contextlib
import logging

from meshserve._clock import Clock
from meshserve._ids import ModelId
from meshserve.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
    PreconditionFailedError,
    UnavailableError,
    quote_client_value,
)
from meshserve.mesh._cache import ModelCache
from meshserve.mesh._copies import Copies
from meshserve.mesh._mesh_view import LOADED, MeshView
from meshserve.mesh._own_records import MODEL_STATES, OwnRecords
from meshserve.mesh._quotas import NamespaceQuotas
from meshserve.mesh._status import CopyInfo, ModelState, ModelStatus, ModelSummary
from meshserve.protocol.routing import NO_HEADERS, RoutingHeaders
from meshserve.registry import CopyState, ModelRecord, Registry
from meshserve.resources import redact_uri
from meshserve.settings import CacheSettings

__all__ = ["LOAD_NOW_AGE_MS", "REGISTER_AGE_MS", "Models"]

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
# ModelMesh's registration timestamps: a proactive load never displaces a
# model used within the last hour; a plain registration ranks below that.
LOAD_NOW_AGE_MS = 1 * HOUR_MS
REGISTER_AGE_MS = 6 * HOUR_MS

_STATUS_COPIES = frozenset({CopyState.LOADING, CopyState.LOADED, CopyState.FAILED})


class Models:
    """Registered models: their records, and the mesh's view of their copies."""

    def __init__(
        self,
        *,
        registry: Registry,
        cache: ModelCache,
        copies: Copies,
        view: MeshView,
        own: OwnRecords,
        quotas: NamespaceQuotas,
        clock: Clock,
        settings: CacheSettings,
    ) -> None:
        self._registry = registry
        self._cache = cache
        self._copies = copies
        self._view = view
        self._own = own
        self._quotas = quotas
        self._clock = clock
        self._settings = settings

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    def model_status(self, model_id: str) -> ModelStatus:
        if self._registry.model(model_id) is None:
            return ModelStatus(ModelState.NOT_FOUND)
        copies: list[CopyInfo] = []
        errors: list[str] = []
        local = self._own.copy_record(model_id, self._cache.state(model_id))
        records = [local] if local is not None else []
        records += self._view.remote_copies(model_id, states=_STATUS_COPIES)
        expiry_ms = self._settings.load_failure_expiry_seconds * 1000
        now = self._now_ms()
        for copy in records:
            if copy.state is CopyState.FAILED:
                if now - copy.time_ms >= expiry_ms:
                    continue
                errors.append(copy.error)
            copies.append(CopyInfo(copy.instance_id, MODEL_STATES[copy.state], copy.time_ms))
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
            self._cache.check_location(model_id=model_id, model_path=path, model_key=key)
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
            self._quotas.check_registration(model_id)
            now = self._now_ms()
            if not last_used_ms:
                last_used_ms = now - (LOAD_NOW_AGE_MS if load_now else REGISTER_AGE_MS)
            record = ModelRecord(
                model_id=ModelId(model_id),
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
        """Have a copy loaded somewhere; a failure is recorded (statuses
        report it), not raised."""
        record = self._registry.model(model_id)
        if record is None:
            raise ModelNotFoundError(f"model {quote_client_value(model_id)} is not registered")
        try:
            await self._copies.ensure_available(
                model_id, sync=sync, last_used_ms=record.last_used_ms
            )
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
        """Delete a model's record (whoever uses it) and this instance's copy."""
        while (entry := self._registry.models.get(model_id)) is not None:
            if await self._registry.delete_model(model_id, expected_revision=entry.revision):
                log.info("unregistered model %s", model_id)
                break
        await self._cache.drop(model_id)

    async def ensure_loaded(
        self,
        model_id: str,
        *,
        last_used_ms: int = 0,
        sync: bool = False,
        headers: RoutingHeaders = NO_HEADERS,
    ) -> ModelStatus:
        """ModelMesh's ensureLoaded: from a client, have a copy somewhere;
        from a peer that placed the model here (``headers.dest``), load it here."""
        if headers.dest is not None:
            await self._copies.await_record(model_id)
        if self._registry.model(model_id) is None:
            return ModelStatus(ModelState.NOT_FOUND)
        if headers.dest is not None:
            # Placed here by another instance: a failure goes back to it as
            # the error itself.
            await self._copies.load_here(model_id, sync=sync, last_used_ms=last_used_ms)
            return self.model_status(model_id)
        with contextlib.suppress(ModelLoadError):  # recorded; the status reports it
            await self._copies.ensure_available(model_id, sync=sync, last_used_ms=last_used_ms)
        return self.model_status(model_id)

    def list_models(self, *, only: str | None = None) -> list[ModelSummary]:
        """Every registered model (``only``: that one, if registered): the
        mesh's view of it (the same from every instance: copies, size and
        last use come from the registry) and this instance's own counters."""
        summaries = []
        # One pass over the vmodels, not one per model: 100,000 of each
        # would otherwise be 10^10 comparisons.
        referencing: dict[str, list[str]] = {}
        for vmodel_id, ventry in sorted(self._registry.vmodels.items()):
            vrecord = ventry.record
            for target in {vrecord.active_model_id, vrecord.target_model_id}:
                referencing.setdefault(target, []).append(vmodel_id)
        models = self._registry.models
        if only is not None:
            models = {only: models[only]} if only in models else {}
        for model_id, entry in sorted(models.items()):
            record = entry.record
            stats = self._cache.stats.get(model_id)
            copies = self._view.copies(model_id, states=LOADED)
            # A copy loaded here is sized before its record reaches the
            # registry (records are published in the background).
            here = self._cache.lru.get(model_id) if self._cache.is_loaded(model_id) else None
            sizes = [c.size_bytes for c in copies] + ([here.size_bytes] if here else [])
            summaries.append(
                ModelSummary(
                    model_id=model_id,
                    type=record.type,
                    path=record.path,
                    status=self.model_status(model_id),
                    copies=len(copies),
                    size_bytes=max(sizes, default=0),
                    last_used_ms=record.last_requested_ms,
                    load_count=stats.loads if stats else 0,
                    eviction_count=stats.evictions if stats else 0,
                    last_load_ms=stats.last_load_ms if stats else 0,
                    auto_delete=record.auto_delete,
                    vmodels=tuple(referencing.get(model_id, ())),
                    pull_ms=stats.pull_ms if stats else 0,
                    pull_bytes=stats.pull_bytes if stats else 0,
                    pull_total_bytes=stats.pull_total_bytes if stats else 0,
                    pulled_from_cache=stats.pulled_from_cache if stats else False,
                )
            )
        return summaries
