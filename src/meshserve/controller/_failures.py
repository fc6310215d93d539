"""Why a resource's reconcile failed, in the words its status gives.

Two resources of different kinds with one name (a Predictor and an
InferenceService) are one vmodel, as in ModelMesh Serving: the first applied
keeps it and the other is refused with :func:`owned_elsewhere`'s message
(raised as AlreadyExistsError). What a reconcile raised becomes a reason
and message with :func:`failure_of`.
"""

from __future__ import annotations

from meshserve.controller._resource_store import ResourceKey
from meshserve.errors import AlreadyExistsError, InvalidRequestError, MeshServeError
from meshserve.mesh import VModelState, VModelStatus
from meshserve.resources import (
    INFERENCE_SERVICE_SOURCE,
    PREDICTOR_SOURCE,
    FailureReason,
    ModelNames,
)

__all__ = ["failure_of", "owned_elsewhere"]

_OWNER_KINDS = {INFERENCE_SERVICE_SOURCE: "an InferenceService", PREDICTOR_SOURCE: "a Predictor"}


def owned_elsewhere(key: ResourceKey, names: ModelNames, vmodel: VModelStatus) -> str | None:
    """Why the vmodel ``names`` wants is not resource ``key``'s to take
    (None: it is free, or already this resource's)."""
    if vmodel.state is VModelState.NOT_FOUND or vmodel.owner == names.owner:
        return None
    holder = _OWNER_KINDS.get(vmodel.owner)
    where = f"vmodel {key.name} in namespace {key.namespace}"
    if holder is None:
        return (
            f"{where} already exists with owner {vmodel.owner!r} (set through the management "
            f"API), so this {key.kind} cannot take it; delete that vmodel or rename this {key.kind}"
        )
    return (
        f"{holder} named {key.name} already owns {where}: a Predictor and an InferenceService "
        f"of one name are one vmodel, and the first applied keeps it; delete one of them or "
        f"rename this {key.kind}"
    )


def failure_of(exc: Exception) -> tuple[FailureReason, str]:
    """The reason and message for a reconcile that raised ``exc``."""
    if isinstance(exc, InvalidRequestError | AlreadyExistsError):
        # What the resource asks cannot be: its spec (or its name) must change.
        return FailureReason.INVALID_PREDICTOR_SPEC, str(exc)
    if isinstance(exc, MeshServeError):
        return FailureReason.MODEL_LOAD_FAILED, f"could not register: {exc}"
    # A bug: its traceback goes to the log, not its text to a status.
    return (
        FailureReason.MODEL_LOAD_FAILED,
        f"internal error ({type(exc).__name__}); see the controller's log",
    )
