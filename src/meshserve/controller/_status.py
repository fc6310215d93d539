"""A resource's status as the controller reports it, in ModelMesh Serving's shape.

The controller builds typed records; :func:`status_document` is the one
place that turns them into the mapping the store keeps and ``meshserve
get`` / ``describe`` / ``wait`` read (key order included, since ``get``
prints it as is). One record, :class:`PredictorStatus`, has two shapes:

- an InferenceService's is KServe's v1beta1 ``InferenceServiceStatus``, as
  ModelMesh Serving fills it: ``observedGeneration``, ``conditions``
  (``PredictorReady`` and ``Ready``, with ``lastTransitionTime``), ``url``,
  ``address.url``, ``components.predictor.{grpcUrl,restUrl,url}`` (once
  available), and ``modelStatus.{transitionStatus, states.{activeModelState,
  targetModelState}, lastFailureInfo.{location, reason, message,
  modelRevisionName, time}, copies.{failedCopies, totalCopies}}``;
- a Predictor's is ModelMesh Serving's v1alpha1 ``PredictorStatus``, flat:
  ``available``, ``transitionStatus``, ``activeModelState``,
  ``targetModelState``, ``lastFailureInfo`` (with ``modelId``),
  ``httpEndpoint``, ``grpcEndpoint``, ``totalCopies``, ``failedCopies``
  (and meshserve's ``observedGeneration``).

A resource meant for another controller gets a :class:`SkippedStatus`; a
ServingRuntime a :class:`RuntimeVerdict`.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from meshserve import mesh
from meshserve._resource_refs import READY, find_condition
from meshserve.protocol import routing
from meshserve.resources import FailureReason, ModelNames, redact_uris

__all__ = [
    "PREDICTOR_READY",
    "READY",
    "ConditionStatus",
    "LastFailureInfo",
    "ModelState",
    "PredictorStatus",
    "ResourceStatus",
    "RuntimeVerdict",
    "SkippedStatus",
    "TransitionStatus",
    "find_condition",
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
    model_id: str
    """The model revision the failure is about (``<name>__isvc-<hash>``):
    the one that failed to load, or the one the refused spec would be."""
    location: str = ""
    """The instance where a copy failed ("" when no copy is known)."""
    time_ms: int | None = None
    """When that copy failed (epoch milliseconds); None: a failure of no
    copy, timed when first seen (:func:`status_document`)."""


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
    grpc_endpoint: str = ""
    """Where clients reach it over gRPC ("" when it never reached the mesh)."""
    rest_url: str | None = None
    last_failure_info: LastFailureInfo | None = None
    reached_mesh: bool = True
    """False for a resource refused before the mesh saw it (:meth:`refused`)."""

    @classmethod
    def refused(
        cls, reason: FailureReason, message: str, *, generation: int, model_id: str
    ) -> PredictorStatus:
        """A resource the controller could not hand to the mesh; ``model_id``
        the revision its spec names."""
        return cls(
            observed_generation=generation,
            active_model_state=ModelState.FAILED_TO_LOAD,
            target_model_state=None,
            transition_status=TransitionStatus.INVALID_SPEC
            if reason is FailureReason.INVALID_PREDICTOR_SPEC
            else TransitionStatus.BLOCKED_BY_FAILED_LOAD,
            last_failure_info=LastFailureInfo(reason=reason, message=message, model_id=model_id),
            reached_mesh=False,
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


class ConditionStatus(enum.StrEnum):
    """A condition's status, as Kubernetes writes it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


PREDICTOR_READY = "PredictorReady"
"""The InferenceService's conditions: KServe's ``PredictorReady`` and the
``Ready`` that sums it up (ModelMesh Serving's living condition set)."""


def status_document(
    status: ResourceStatus,
    *,
    kind: str,
    now_s: float,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status of a ``kind`` resource as the store keeps it and ``meshserve
    get`` shows it: an InferenceService's in KServe's v1beta1 shape, a
    Predictor's in ModelMesh Serving's v1alpha1 one.

    ``previous`` is the document stored before (None: none): a condition
    whose status has not changed keeps its ``lastTransitionTime``, and a
    failure that is still the same keeps its ``time``, so an unchanged
    status is an unchanged document (nothing to write). ``now_s`` (epoch
    seconds) stamps what is new."""
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
    before = previous or {}
    if kind == "Predictor":
        return _predictor_document(status, previous=before, now_s=now_s)
    return _inference_service_document(status, previous=before, now_s=now_s)


def _predictor_document(
    status: PredictorStatus, *, previous: Mapping[str, Any], now_s: float
) -> dict[str, Any]:
    """v1alpha1 PredictorStatus: flat, ``httpEndpoint``, ``modelId`` in the
    failure; meshserve adds ``observedGeneration``."""
    document: dict[str, Any] = {
        "observedGeneration": status.observed_generation,
        "available": status.available,
        "transitionStatus": str(status.transition_status),
        "activeModelState": str(status.active_model_state),
        "targetModelState": str(status.target_model_state or ""),
    }
    failure = status.last_failure_info
    if failure is not None:
        document["lastFailureInfo"] = _failure_document(
            failure,
            model_field="modelId",
            previous=_mapping(previous.get("lastFailureInfo")),
            now_s=now_s,
        )
    document["httpEndpoint"] = status.rest_url or ""
    document["grpcEndpoint"] = status.grpc_endpoint
    document["totalCopies"] = status.total_copies
    document["failedCopies"] = status.failed_copies
    return document


def _inference_service_document(
    status: PredictorStatus, *, previous: Mapping[str, Any], now_s: float
) -> dict[str, Any]:
    """v1beta1 InferenceServiceStatus, in KServe's field order; the URLs
    once the predictor is available, as ModelMesh Serving writes them."""
    document: dict[str, Any] = {
        "observedGeneration": status.observed_generation,
        "conditions": _conditions(status, previous=previous.get("conditions"), now_s=now_s),
    }
    if status.available and status.grpc_endpoint:
        document["url"] = status.grpc_endpoint
        document["address"] = {"url": status.grpc_endpoint}
        predictor = {"grpcUrl": status.grpc_endpoint}
        if status.rest_url is not None:
            predictor["restUrl"] = status.rest_url
        predictor["url"] = status.grpc_endpoint
        document["components"] = {"predictor": predictor}
    states = {"activeModelState": str(status.active_model_state)}
    if status.target_model_state is not None:
        states["targetModelState"] = str(status.target_model_state)
    model_status: dict[str, Any] = {
        "transitionStatus": str(status.transition_status),
        "states": states,
    }
    failure = status.last_failure_info
    if failure is not None:
        before = _mapping(_mapping(previous.get("modelStatus")).get("lastFailureInfo"))
        model_status["lastFailureInfo"] = _failure_document(
            failure, model_field="modelRevisionName", previous=before, now_s=now_s
        )
    model_status["copies"] = {
        "failedCopies": status.failed_copies,
        "totalCopies": status.total_copies,
    }
    document["modelStatus"] = model_status
    return document


def _failure_document(
    failure: LastFailureInfo,
    *,
    model_field: str,
    previous: Mapping[str, Any],
    now_s: float,
) -> dict[str, Any]:
    """FailureInfo (empty fields left out, as upstream's omitempty). Its
    ``time``: when the failed copy failed; for a failure of no copy (no
    runtime, an invalid spec...), when it was first seen: kept while the
    same failure stays."""
    document: dict[str, Any] = {}
    if failure.location:
        document["location"] = failure.location
    document["reason"] = str(failure.reason)
    document["message"] = redact_uris(failure.message)
    if failure.model_id:
        document[model_field] = failure.model_id
    if failure.time_ms is not None:
        document["time"] = _time(failure.time_ms / 1000)
    else:
        same = bool(previous) and all(previous.get(k) == v for k, v in document.items())
        kept = previous.get("time") if same else None
        document["time"] = kept if isinstance(kept, str) else _time(now_s)
    return document


def _conditions(status: PredictorStatus, *, previous: Any, now_s: float) -> list[dict[str, Any]]:
    """``PredictorReady`` and ``Ready`` (sorted by type, as Knative keeps
    them): True while a model serves, False when it failed, Unknown while
    it is on its way. A condition keeps its ``lastTransitionTime`` while its
    status stays."""
    if status.available:
        value, reason, message = ConditionStatus.TRUE, "", ""
    else:
        failed = _failure_reason(status)
        if failed is not None:
            value, (reason, message) = ConditionStatus.FALSE, failed
        else:
            value, reason = ConditionStatus.UNKNOWN, str(status.active_model_state)
            message = f"the model is {reason.lower()}, not loaded yet"
    listed = previous if isinstance(previous, list) else []
    before = {c.get("type"): c for c in listed if isinstance(c, Mapping)}
    conditions = []
    for kind in (PREDICTOR_READY, READY):
        old = before.get(kind) or {}
        kept = old.get("status") == str(value) and old.get("lastTransitionTime")
        condition: dict[str, Any] = {
            "type": kind,
            "status": str(value),
            "lastTransitionTime": kept or _time(now_s),
        }
        if reason:
            condition["reason"] = reason
            condition["message"] = message
        conditions.append(condition)
    return conditions


def _failure_reason(status: PredictorStatus) -> tuple[str, str] | None:
    """Why the resource is not ready when that is a failure: (reason,
    message); None while it is only on its way."""
    failure = status.last_failure_info
    if failure is not None:
        return str(failure.reason), redact_uris(failure.message)
    if status.active_model_state is ModelState.FAILED_TO_LOAD:
        return str(ModelState.FAILED_TO_LOAD), "the model failed to load"
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _time(epoch_s: float) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes a time."""
    moment = datetime.datetime.fromtimestamp(int(epoch_s), tz=datetime.UTC)
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
        grpc_endpoint=f"grpc://{grpc_url}",
        rest_url=_rest_url(rest_url, names) if rest_url is not None else None,
        last_failure_info=_last_failure(vmodel, fallback_id=names.model_id),
    )


def _rest_url(base: str, names: ModelNames) -> str:
    """The model's REST URL for a client of its namespace: the resource's
    plain name (the last part of a namespaced vmodel id), under the
    namespace's prefix outside ``default``."""
    plain = names.vmodel_id.rpartition("/")[2]
    return f"{base}{routing.rest_model_path(names.namespace, plain)}"


def _count(status: mesh.ModelStatus, state: mesh.ModelState) -> int:
    return sum(1 for c in status.copies if c.state is state)


def _last_failure(vmodel: mesh.VModelStatus, *, fallback_id: str) -> LastFailureInfo | None:
    """The target's load failure if it has one, else the active model's
    (``fallback_id``: the resource's own model, should the mesh not say)."""
    active = vmodel.active_status or mesh.ModelStatus(mesh.ModelState.NOT_FOUND)
    target = vmodel.target_status
    failing = target if target is not None and target.errors else active
    if not failing.errors:
        return None
    copy = next((c for c in failing.copies if c.state is mesh.ModelState.LOADING_FAILED), None)
    return LastFailureInfo(
        reason=FailureReason.MODEL_LOAD_FAILED,
        message="; ".join(failing.errors),
        model_id=(vmodel.target_model_id if failing is target else vmodel.active_model_id)
        or fallback_id,
        location=copy.location if copy is not None else "",
        time_ms=copy.time_ms if copy is not None else None,
    )
