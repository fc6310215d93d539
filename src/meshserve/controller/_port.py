"""What the controller needs of the mesh: a port, so that it runs against
any mesh that offers these calls (the :class:`meshserve.mesh.Instance` of
this process; a fake in unit tests; a remote mesh for the operator).

The names are the management API's (ModelMesh's setVModel, deleteVModel,
getVModelStatus, getModelStatus); the states are the mesh's own records.
"""

from __future__ import annotations

from typing import Protocol

from meshserve.mesh import ModelStatus, VModelStatus

__all__ = ["MeshPort"]


class MeshPort(Protocol):
    """The mesh as the controller drives it."""

    def vmodel_status(self, vmodel_id: str) -> VModelStatus:
        """The vmodel's active and target models and their states
        (``NOT_FOUND`` when there is no such vmodel)."""
        ...

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
        """Create the vmodel or point it at a new target, registering the
        target model first; the vmodel moves to it once it is loaded."""
        ...

    async def delete_vmodel(self, vmodel_id: str, *, owner: str) -> None:
        """Delete the vmodel (no effect if there is none); its auto-delete
        models go with it."""
        ...

    def model_status(self, model_id: str) -> ModelStatus:
        """The model's state and copies in the mesh."""
        ...

    def can_place(self, model_id: str) -> bool:
        """Whether some live instance could take a new copy of the model now."""
        ...

    async def ensure_available(self, model_id: str, *, sync: bool) -> None:
        """Load a copy where placement says if none is loaded or loading."""
        ...
