"""VModels: aliases that move to a new model only once it can serve.

ModelMesh's semantics: a vmodel serves its active model while a new target
loads (when the active one is loaded, or when asked to load now), then
switches; a target that fails leaves it TRANSITION_FAILED until the failure
expires; owners guard changes; ``expectedTargetModelId`` makes updates
compare-and-set; auto-delete models go when no vmodel refers to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from meshserve import _tasks
from meshserve._ids import ModelId, VModelId
from meshserve.errors import (
    AlreadyExistsError,
    InvalidRequestError,
    MeshServeError,
    ModelNotFoundError,
    PreconditionFailedError,
    quote_client_value,
)
from meshserve.mesh._status import ModelState, ModelStatus, VModelState, VModelStatus
from meshserve.registry import Registry, VModelRecord

__all__ = ["CopyOps", "ModelOps", "VModelTable"]

log = logging.getLogger(__name__)


class ModelOps(Protocol):
    """What vmodels need of model management (``_models.Models``)."""

    def model_status(self, model_id: str) -> ModelStatus: ...

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
    ) -> ModelStatus: ...

    async def load_now(self, model_id: str, *, sync: bool) -> None: ...

    async def delete_model(self, model_id: str) -> None: ...


class CopyOps(Protocol):
    """What vmodel transitions need of the mesh's copies (``_copies.Copies``)."""

    def mesh_failure(self, model_id: str) -> MeshServeError | None:
        """The model's unexpired load failure anywhere in the mesh."""
        ...

    def model_ready(self, model_id: str) -> bool:
        """A copy is loaded somewhere."""
        ...

    async def ensure_available(
        self, model_id: str, *, sync: bool, last_used_ms: int = 0
    ) -> None: ...


class VModelTable:
    """The instance's vmodel operations and their transitions."""

    def __init__(
        self,
        *,
        registry: Registry,
        models: ModelOps,
        copies: CopyOps,
        retire_delay_s: float = 0.0,
    ) -> None:
        self._registry = registry
        self._models = models
        self._copies = copies
        self._retire_delay_s = retire_delay_s
        self._transitions: dict[str, asyncio.Task[None]] = {}
        self._retiring: dict[str, asyncio.Task[None]] = {}

    async def close(self) -> None:
        for task in list(self._transitions.values()):
            await _tasks.cancel_and_wait(task)
        self._transitions.clear()
        # Retire now what was waiting: nobody will route here any more.
        for model_id, task in list(self._retiring.items()):
            await _tasks.cancel_and_wait(task)
            await self._collect_unreferenced(model_id)
        self._retiring.clear()

    def _retire_later(self, model_id: str) -> None:
        """Collect a model the vmodel just left, after the retire delay."""

        async def retire() -> None:
            await asyncio.sleep(self._retire_delay_s)
            self._retiring.pop(model_id, None)
            await self._collect_unreferenced(model_id)

        if model_id not in self._retiring:
            self._retiring[model_id] = _tasks.start_supervised(retire(), name=f"retire:{model_id}")

    def status(self, vmodel_id: str, *, owner: str = "") -> VModelStatus:
        record = self._registry.vmodel(vmodel_id)
        if record is None or (owner and record.owner != owner):
            return VModelStatus(VModelState.NOT_FOUND)
        active = self._models.model_status(record.active_model_id)
        if not record.transitioning:
            return VModelStatus(
                VModelState.DEFINED,
                record.active_model_id,
                record.target_model_id,
                active,
                None,
                record.owner,
            )
        target = self._models.model_status(record.target_model_id)
        state = (
            VModelState.TRANSITION_FAILED
            if target.state is ModelState.LOADING_FAILED
            else VModelState.TRANSITIONING
        )
        return VModelStatus(
            state, record.active_model_id, record.target_model_id, active, target, record.owner
        )

    def list(self) -> list[tuple[str, VModelStatus]]:
        return [(name, self.status(name)) for name in sorted(self._registry.vmodels)]

    async def set(
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
        # Named apart from here on: the alias, and the model it points at.
        alias, target = VModelId(vmodel_id), ModelId(target_model_id)
        while True:
            entry = self._registry.vmodels.get(vmodel_id)
            record = entry.record if entry is not None else None
            if record is not None and owner and record.owner != owner:
                raise AlreadyExistsError(
                    f"vmodel {quote_client_value(vmodel_id)} exists with owner "
                    f"{quote_client_value(record.owner)}, not {quote_client_value(owner)}"
                )
            if expected_target_model_id:
                current = record.target_model_id if record is not None else None
                if expected_target_model_id == target_model_id:
                    if current not in (None, target_model_id):
                        raise PreconditionFailedError(
                            f"vmodel {quote_client_value(vmodel_id)} targets "
                            f"{quote_client_value(current)}, "
                            f"not {quote_client_value(target_model_id)}"
                        )
                elif current != expected_target_model_id:
                    raise PreconditionFailedError(
                        f"vmodel {quote_client_value(vmodel_id)} targets "
                        f"{quote_client_value(current) if current is not None else 'no model'}, "
                        f"expected {quote_client_value(expected_target_model_id)}"
                    )
            if record is None and update_only:
                raise ModelNotFoundError(
                    f"vmodel {quote_client_value(vmodel_id)} does not exist (updateOnly)"
                )
            if model_type:
                await self._models.register_model(
                    target_model_id,
                    type=model_type,
                    path=model_path,
                    key=model_key,
                    auto_delete=auto_delete_target,
                )
            elif self._registry.model(target_model_id) is None:
                raise ModelNotFoundError(
                    f"target model {quote_client_value(target_model_id)} is not registered "
                    "and no modelInfo was given"
                )
            if record is None:
                created = VModelRecord(
                    vmodel_id=alias,
                    active_model_id=target,
                    target_model_id=target,
                    owner=owner,
                )
                if not await self._registry.create_vmodel(created):
                    continue
                log.info("created vmodel %s -> %s", vmodel_id, target_model_id)
                if load_now:
                    await self._models.load_now(target_model_id, sync=sync)
                return self.status(vmodel_id)
            assert entry is not None
            if record.target_model_id == target_model_id and not force:
                break
            previous_target = record.target_model_id
            updated = VModelRecord(
                vmodel_id=alias,
                active_model_id=target if force else record.active_model_id,
                target_model_id=target,
                owner=record.owner,
                extra=record.extra,
            )
            if not await self._registry.update_vmodel(updated, expected_revision=entry.revision):
                continue
            log.info("vmodel %s: target %s -> %s", vmodel_id, previous_target, target_model_id)
            await self._collect_unreferenced(previous_target, record.active_model_id)
            break
        self.kick_transition(vmodel_id, load_now=load_now)
        if sync:
            task = self._transitions.get(vmodel_id)
            if task is not None:
                with contextlib.suppress(MeshServeError):
                    await asyncio.shield(task)
        return self.status(vmodel_id)

    async def delete(self, vmodel_id: str, *, owner: str = "") -> None:
        while (entry := self._registry.vmodels.get(vmodel_id)) is not None:
            record = entry.record
            if owner and record.owner != owner:
                raise PreconditionFailedError(
                    f"vmodel {quote_client_value(vmodel_id)} is owned by "
                    f"{quote_client_value(record.owner)}, not {quote_client_value(owner)}"
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
                await self._models.delete_model(model_id)

    def kick_transition(self, vmodel_id: str, *, load_now: bool = False) -> None:
        record = self._registry.vmodel(vmodel_id)
        if record is None or not record.transitioning:
            return
        running = self._transitions.get(vmodel_id)
        if running is not None and not running.done():
            return
        if self._copies.mesh_failure(record.target_model_id) is not None:
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
        if load_now or self._copies.model_ready(record.active_model_id):
            try:
                await self._copies.ensure_available(target, sync=True)
            except MeshServeError as exc:
                log.warning("vmodel %s: target %s failed to load: %s", vmodel_id, target, exc)
                return
        while (entry := self._registry.vmodels.get(vmodel_id)) is not None:
            current = entry.record
            if current.target_model_id != target or not current.transitioning:
                return
            switched = VModelRecord(
                vmodel_id=current.vmodel_id,
                active_model_id=target,
                target_model_id=target,
                owner=current.owner,
                extra=current.extra,
            )
            if await self._registry.update_vmodel(switched, expected_revision=entry.revision):
                log.info("vmodel %s now serves %s", vmodel_id, target)
                self._retire_later(current.active_model_id)
                return
