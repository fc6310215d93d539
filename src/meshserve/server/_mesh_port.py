"""The controller's port (:class:`meshserve.controller.MeshPort`) over the
instance this process runs."""

from __future__ import annotations

from meshserve.mesh import Instance, ModelStatus, VModelStatus

__all__ = ["InstanceMesh"]


class InstanceMesh:
    """Hands the controller's calls to a local :class:`Instance`."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance

    def vmodel_status(self, vmodel_id: str) -> VModelStatus:
        return self._instance.vmodels.status(vmodel_id)

    async def set_vmodel(
        self,
        vmodel_id: str,
        *,
        target_model_id: str,
        owner: str,
        model_type: str,
        model_path: str,
        model_key: str,
        auto_delete_target: bool,
        load_now: bool,
    ) -> VModelStatus:
        return await self._instance.vmodels.set(
            vmodel_id,
            target_model_id=target_model_id,
            owner=owner,
            model_type=model_type,
            model_path=model_path,
            model_key=model_key,
            auto_delete_target=auto_delete_target,
            load_now=load_now,
        )

    async def delete_vmodel(self, vmodel_id: str, *, owner: str) -> None:
        await self._instance.vmodels.delete(vmodel_id, owner=owner)

    def model_status(self, model_id: str) -> ModelStatus:
        return self._instance.model_status(model_id)

    def can_place(self, model_id: str) -> bool:
        return self._instance.can_place(model_id)

    async def ensure_available(self, model_id: str, *, sync: bool) -> None:
        await self._instance.ensure_available(model_id, sync=sync)
