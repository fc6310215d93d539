"""A served resource's status, in ModelMesh Serving's shape.

``activeModelState`` / ``targetModelState``: Pending, Standby, Loading,
Loaded, FailedToLoad; ``transitionStatus``: UpToDate, InProgress,
BlockedByFailedLoad, InvalidSpec; ``lastFailureInfo`` {location, reason,
message, modelId, time}; ``available``; ``totalCopies``, ``failedCopies``;
and where to reach it (``grpcEndpoint``, ``restUrl``).
"""

from __future__ import annotations

import datetime
from typing import Any

from meshserve.control import FailureReason, ModelNames, redact_uris
from meshserve.mesh import Instance, ModelState, ModelStatus, VModelState

__all__ = ["resource_status"]

_STATES = {
    ModelState.NOT_FOUND: "Pending",
    ModelState.NOT_LOADED: "Standby",
    ModelState.LOADING: "Loading",
    ModelState.LOADED: "Loaded",
    ModelState.LOADING_FAILED: "FailedToLoad",
    ModelState.UNKNOWN: "Pending",
}


def resource_status(
    instance: Instance,
    names: ModelNames,
    *,
    generation: int,
    grpc_url: str,
    rest_url: str | None,
) -> dict[str, Any]:
    vmodel = instance.vmodel_status(names.vmodel_id)
    active = vmodel.active_status or ModelStatus(ModelState.NOT_FOUND)
    target = vmodel.target_status
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "activeModelState": _STATES[active.state],
        "targetModelState": _STATES[target.state] if target is not None else "",
        "transitionStatus": _transition(vmodel.state),
        "available": active.state is ModelState.LOADED,
        "totalCopies": sum(1 for c in active.copies if c.state is ModelState.LOADED),
        "failedCopies": sum(1 for c in active.copies if c.state is ModelState.LOADING_FAILED),
        "grpcEndpoint": f"grpc://{grpc_url}",
        "modelId": vmodel.target_model_id or names.model_id,
    }
    if rest_url is not None:
        status["restUrl"] = f"{rest_url}/v2/models/{names.vmodel_id}"
    failing = target if target is not None and target.errors else active
    if failing.errors:
        copy = next((c for c in failing.copies if c.state is ModelState.LOADING_FAILED), None)
        failed_model = vmodel.target_model_id if failing is target else vmodel.active_model_id
        status["lastFailureInfo"] = {
            "location": copy.location if copy is not None else "",
            "reason": str(FailureReason.MODEL_LOAD_FAILED),
            "message": redact_uris("; ".join(failing.errors)),
            "modelId": failed_model,
            "time": _time(copy.time_ms) if copy is not None else "",
        }
    return status


def _transition(state: VModelState) -> str:
    if state is VModelState.TRANSITIONING:
        return "InProgress"
    if state is VModelState.TRANSITION_FAILED:
        return "BlockedByFailedLoad"
    return "UpToDate"


def _time(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
