"""A resource's status as the controller reports it, in ModelMesh Serving's shape.

The controller builds typed records; :func:`status_document` is the one
place that turns them into the mapping the store keeps and ``meshserve
get`` / ``describe`` show (key order included, since those print it as is).

An InferenceService's or Predictor's status (:class:`PredictorStatus`):
``activeModelState`` / ``targetModelState`` (:class:`ModelState`),
``transitionStatus`` (:class:`TransitionStatus`), ``lastFailureInfo``
(:class:`LastFailureInfo`), ``available``, ``totalCopies``, ``failedCopies``,
and where to reach it (``grpcEndpoint``, ``restUrl``, ``modelId``). A
resource meant for another controller gets a :class:`SkippedStatus`; a
ServingRuntime a :class:`RuntimeVerdict`.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any, TypeAlias

from meshserve import mesh
from meshserve.resources import FailureReason, ModelNames, redact_uris

__all__ = [
    "LastFailureInfo",
    "ModelState",
    "PredictorStatus",
    "ResourceStatus",
    "RuntimeVerdict",
    "SkippedStatus",
    "TransitionStatus",
    "predictor_status",
    "status_document",
]


class ModelState(enum.StrEnum):
    """A model's state as a resource's status names it (ModelMesh Serving's
    ``ModelState``; the mesh's own states are ``meshserve.mesh.ModelState``)."""

    PENDING = "Pending"
    STANDBY = "Standby"
    LOADING = "Loading"
    LOADED = "Loaded"
    FAILED_TO_LOAD = "FailedToLoad"


class TransitionStatus(enum.StrEnum):
    """Where a resource's move to its current spec stands."""

    UP_TO_DATE = "UpToDate"
    IN_PROGRESS = "InProgress"
    BLOCKED_BY_FAILED_LOAD = "BlockedByFailedLoad"
    INVALID_SPEC = "InvalidSpec"


@dataclass(frozen=True, slots=True, kw_only=True)
class LastFailureInfo:
    """Why the resource's model is not serving."""

    reason: FailureReason
    message: str
    """Shown with any URI redacted (:func:`status_document` does it)."""
    model_id: str | None = None
    """The model that failed to load; None when the failure came before
    the mesh (an invalid spec, no runtime), which reports reason and
    message only."""
    location: str = ""
    """The instance where a copy failed ("" when no copy is known)."""
    time_ms: int | None = None
    """When that copy failed (epoch milliseconds)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictorStatus:
    """An InferenceService's or Predictor's status."""

    observed_generation: int
    active_model_state: ModelState
    target_model_state: ModelState | None
    """None: no transition under way."""
    transition_status: TransitionStatus
    available: bool = False
    total_copies: int = 0
    failed_copies: int = 0
    model_id: str | None = None
    """The model the vmodel targets; None when the resource never reached
    the mesh (refused before, see :meth:`refused`)."""
    grpc_endpoint: str = ""
    rest_url: str | None = None
    last_failure_info: LastFailureInfo | None = None

    @classmethod
    def refused(cls, reason: FailureReason, message: str, *, generation: int) -> PredictorStatus:
        """A resource the controller could not hand to the mesh."""
        return cls(
            observed_generation=generation,
            active_model_state=ModelState.FAILED_TO_LOAD,
            target_model_state=None,
            transition_status=TransitionStatus.INVALID_SPEC
            if reason is FailureReason.INVALID_PREDICTOR_SPEC
            else TransitionStatus.BLOCKED_BY_FAILED_LOAD,
            last_failure_info=LastFailureInfo(reason=reason, message=message),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedStatus:
    """A resource meant for another controller (not ModelMesh's)."""

    observed_generation: int
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeVerdict:
    """A ServingRuntime's status: accepted or why not, and its pool's size."""

    accepted: bool
    message: str = ""
    replicas: int | None = None
    """The instances its pool runs (None: no pool here)."""


ResourceStatus: TypeAlias = PredictorStatus | SkippedStatus | RuntimeVerdict


def status_document(status: ResourceStatus) -> dict[str, Any]:
    """The status as the store keeps it and ``meshserve get`` shows it."""
    if isinstance(status, RuntimeVerdict):
        verdict: dict[str, Any] = {"accepted": status.accepted, "message": status.message}
        if status.replicas is not None:
            verdict["replicas"] = status.replicas
        return verdict
    if isinstance(status, SkippedStatus):
        return {
            "skipped": True,
            "message": status.message,
            "observedGeneration": status.observed_generation,
        }
    return _predictor_document(status)


def _predictor_document(status: PredictorStatus) -> dict[str, Any]:
    states = {
        "activeModelState": str(status.active_model_state),
        "targetModelState": str(status.target_model_state or ""),
        "transitionStatus": str(status.transition_status),
    }
    failure = status.last_failure_info
    if status.model_id is None:
        # Refused before the mesh: the fields ModelMesh Serving sets then,
        # in the order meshserve has always shown them.
        refused: dict[str, Any] = {
            "observedGeneration": status.observed_generation,
            "available": status.available,
            **states,
        }
        if failure is not None:
            refused["lastFailureInfo"] = _failure_document(failure)
        refused["totalCopies"] = status.total_copies
        refused["failedCopies"] = status.failed_copies
        return refused
    document: dict[str, Any] = {
        "observedGeneration": status.observed_generation,
        **states,
        "available": status.available,
        "totalCopies": status.total_copies,
        "failedCopies": status.failed_copies,
        "grpcEndpoint": status.grpc_endpoint,
        "modelId": status.model_id,
    }
    if status.rest_url is not None:
        document["restUrl"] = status.rest_url
    if failure is not None:
        document["lastFailureInfo"] = _failure_document(failure)
    return document


def _failure_document(failure: LastFailureInfo) -> dict[str, Any]:
    message = redact_uris(failure.message)
    if failure.model_id is None:
        return {"reason": str(failure.reason), "message": message}
    return {
        "location": failure.location,
        "reason": str(failure.reason),
        "message": message,
        "modelId": failure.model_id,
        "time": _time(failure.time_ms) if failure.time_ms is not None else "",
    }


def _time(epoch_ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch_ms / 1000, tz=datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- from the mesh's records ---------------------------------------------------

_STATES = {
    mesh.ModelState.NOT_FOUND: ModelState.PENDING,
    mesh.ModelState.NOT_LOADED: ModelState.STANDBY,
    mesh.ModelState.LOADING: ModelState.LOADING,
    mesh.ModelState.LOADED: ModelState.LOADED,
    mesh.ModelState.LOADING_FAILED: ModelState.FAILED_TO_LOAD,
    mesh.ModelState.UNKNOWN: ModelState.PENDING,
}

_TRANSITIONS = {
    mesh.VModelState.TRANSITIONING: TransitionStatus.IN_PROGRESS,
    mesh.VModelState.TRANSITION_FAILED: TransitionStatus.BLOCKED_BY_FAILED_LOAD,
}


def predictor_status(
    vmodel: mesh.VModelStatus,
    names: ModelNames,
    *,
    generation: int,
    grpc_url: str,
    rest_url: str | None,
) -> PredictorStatus:
    """The status of a resource the mesh serves as the vmodel ``vmodel``."""
    active = vmodel.active_status or mesh.ModelStatus(mesh.ModelState.NOT_FOUND)
    target = vmodel.target_status
    return PredictorStatus(
        observed_generation=generation,
        active_model_state=_STATES[active.state],
        target_model_state=_STATES[target.state] if target is not None else None,
        transition_status=_TRANSITIONS.get(vmodel.state, TransitionStatus.UP_TO_DATE),
        available=active.state is mesh.ModelState.LOADED,
        total_copies=_count(active, mesh.ModelState.LOADED),
        failed_copies=_count(active, mesh.ModelState.LOADING_FAILED),
        model_id=vmodel.target_model_id or names.model_id,
        grpc_endpoint=f"grpc://{grpc_url}",
        rest_url=f"{rest_url}/v2/models/{names.vmodel_id}" if rest_url is not None else None,
        last_failure_info=_last_failure(vmodel),
    )


def _count(status: mesh.ModelStatus, state: mesh.ModelState) -> int:
    return sum(1 for c in status.copies if c.state is state)


def _last_failure(vmodel: mesh.VModelStatus) -> LastFailureInfo | None:
    """The target's load failure if it has one, else the active model's."""
    active = vmodel.active_status or mesh.ModelStatus(mesh.ModelState.NOT_FOUND)
    target = vmodel.target_status
    failing = target if target is not None and target.errors else active
    if not failing.errors:
        return None
    copy = next((c for c in failing.copies if c.state is mesh.ModelState.LOADING_FAILED), None)
    return LastFailureInfo(
        reason=FailureReason.MODEL_LOAD_FAILED,
        message="; ".join(failing.errors),
        model_id=vmodel.target_model_id if failing is target else vmodel.active_model_id,
        location=copy.location if copy is not None else "",
        time_ms=copy.time_ms if copy is not None else None,
    )
