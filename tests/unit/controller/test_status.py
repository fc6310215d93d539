"""The one status serialiser: an InferenceService's status in KServe's
v1beta1 shape, a Predictor's in ModelMesh Serving's v1alpha1 one, and the
times that only move when what they time changes."""

from __future__ import annotations

from typing import Any

import pytest

from meshserve.controller import (
    ConditionStatus,
    LastFailureInfo,
    ModelState,
    PredictorStatus,
    RuntimeVerdict,
    SkippedStatus,
    TransitionStatus,
    find_condition,
    status_document,
)
from meshserve.resources import FailureReason

T0 = 1_700_000_000.0
T0_TEXT = "2023-11-14T22:13:20Z"
T1 = T0 + 90
T1_TEXT = "2023-11-14T22:14:50Z"
GRPC = "grpc://127.0.0.1:8033"
REST = "http://127.0.0.1:8008/v2/models/iris"
REVISION = "iris__isvc-3642375d03"

LOADED = PredictorStatus(
    observed_generation=2,
    active_model_state=ModelState.LOADED,
    target_model_state=None,
    transition_status=TransitionStatus.UP_TO_DATE,
    available=True,
    total_copies=2,
    grpc_endpoint=GRPC,
    rest_url=REST,
)
LOADING = PredictorStatus(
    observed_generation=1,
    active_model_state=ModelState.LOADING,
    target_model_state=None,
    transition_status=TransitionStatus.UP_TO_DATE,
    grpc_endpoint=GRPC,
    rest_url=REST,
)
LOAD_FAILED = PredictorStatus(
    observed_generation=1,
    active_model_state=ModelState.FAILED_TO_LOAD,
    target_model_state=None,
    transition_status=TransitionStatus.UP_TO_DATE,
    failed_copies=1,
    grpc_endpoint=GRPC,
    rest_url=REST,
    last_failure_info=LastFailureInfo(
        reason=FailureReason.MODEL_LOAD_FAILED,
        message="cannot read s3://bucket/iris?X-Amz-Signature=abc123secret",
        model_id=REVISION,
        location="instance-b",
        time_ms=int(T0 * 1000) - 5000,
    ),
)


def _isvc(status: PredictorStatus, *, now_s: float = T0, previous: Any = None) -> dict[str, Any]:
    return status_document(status, kind="InferenceService", now_s=now_s, previous=previous)


def _ready(document: dict[str, Any]) -> dict[str, Any]:
    found = find_condition(document, "Ready")
    assert found is not None, document
    return dict(found)


def test_a_loaded_inference_service_has_kserves_shape() -> None:
    assert _isvc(LOADED) == {
        "observedGeneration": 2,
        "conditions": [
            {"type": "PredictorReady", "status": "True", "lastTransitionTime": T0_TEXT},
            {"type": "Ready", "status": "True", "lastTransitionTime": T0_TEXT},
        ],
        "url": GRPC,
        "address": {"url": GRPC},
        "components": {"predictor": {"grpcUrl": GRPC, "restUrl": REST, "url": GRPC}},
        "modelStatus": {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded"},
            "copies": {"failedCopies": 0, "totalCopies": 2},
        },
    }


def test_a_loaded_predictor_keeps_the_flat_v1alpha1_shape() -> None:
    document = status_document(LOADED, kind="Predictor", now_s=T0)
    assert list(document.items()) == [
        ("observedGeneration", 2),
        ("available", True),
        ("transitionStatus", "UpToDate"),
        ("activeModelState", "Loaded"),
        ("targetModelState", ""),
        ("httpEndpoint", REST),
        ("grpcEndpoint", GRPC),
        ("totalCopies", 2),
        ("failedCopies", 0),
    ]


def test_a_predictor_failure_names_the_model_as_model_id() -> None:
    document = status_document(LOAD_FAILED, kind="Predictor", now_s=T0)
    assert document["lastFailureInfo"] == {
        "location": "instance-b",
        "reason": "ModelLoadFailed",
        "message": "cannot read s3://bucket/iris?***",
        "modelId": REVISION,
        "time": "2023-11-14T22:13:15Z",
    }
    assert list(document)[5] == "lastFailureInfo"


def test_a_loading_inference_service_is_not_ready_yet_and_has_no_url() -> None:
    document = _isvc(LOADING)
    assert {"url", "address", "components"}.isdisjoint(document)
    assert _ready(document) == {
        "type": "Ready",
        "status": "Unknown",
        "lastTransitionTime": T0_TEXT,
        "reason": "Loading",
        "message": "the model is loading, not loaded yet",
    }


def test_a_failed_load_is_a_false_condition_with_the_failure_redacted() -> None:
    document = _isvc(LOAD_FAILED)
    for condition in document["conditions"]:
        assert condition["status"] == "False"
        assert condition["reason"] == "ModelLoadFailed"
        assert "abc123secret" not in condition["message"]
    failure = document["modelStatus"]["lastFailureInfo"]
    assert list(failure) == ["location", "reason", "message", "modelRevisionName", "time"]
    assert failure["modelRevisionName"] == REVISION
    assert failure["time"] == "2023-11-14T22:13:15Z", "the copy's failure time"
    assert "abc123secret" not in failure["message"]
    assert document["modelStatus"]["copies"] == {"failedCopies": 1, "totalCopies": 0}


@pytest.mark.parametrize("reason", list(FailureReason))
def test_every_failure_reason_carries_its_revision_and_time(reason: FailureReason) -> None:
    refused = PredictorStatus.refused(reason, f"{reason} here", generation=3, model_id=REVISION)
    document = _isvc(refused)
    failure = document["modelStatus"]["lastFailureInfo"]
    assert failure == {
        "reason": str(reason),
        "message": f"{reason} here",
        "modelRevisionName": REVISION,
        "time": T0_TEXT,
    }
    transition = (
        "InvalidSpec" if reason is FailureReason.INVALID_PREDICTOR_SPEC else ("BlockedByFailedLoad")
    )
    assert document["modelStatus"]["transitionStatus"] == transition
    assert document["modelStatus"]["states"] == {"activeModelState": "FailedToLoad"}
    assert (_ready(document)["status"], _ready(document)["reason"]) == ("False", str(reason))
    predictor = status_document(refused, kind="Predictor", now_s=T0)
    assert predictor["lastFailureInfo"] == {
        "reason": str(reason),
        "message": f"{reason} here",
        "modelId": REVISION,
        "time": T0_TEXT,
    }
    assert (predictor["httpEndpoint"], predictor["grpcEndpoint"]) == ("", "")


def test_an_unchanged_status_is_the_same_document_later() -> None:
    refused = PredictorStatus.refused(
        FailureReason.NO_SUPPORTING_RUNTIME, "no runtime", generation=1, model_id=REVISION
    )
    for status in (LOADED, LOADING, LOAD_FAILED, refused):
        first = _isvc(status, now_s=T0)
        assert _isvc(status, now_s=T1, previous=first) == first, status
        predictor = status_document(status, kind="Predictor", now_s=T0)
        again = status_document(status, kind="Predictor", now_s=T1, previous=predictor)
        assert again == predictor


def test_last_transition_time_moves_only_when_the_status_does() -> None:
    loading = _isvc(LOADING, now_s=T0)
    loaded = _isvc(LOADED, now_s=T1, previous=loading)
    assert _ready(loaded)["lastTransitionTime"] == T1_TEXT, "Unknown -> True"
    # A new generation loading while the old model serves: still True.
    moving = PredictorStatus(
        observed_generation=3,
        active_model_state=ModelState.LOADED,
        target_model_state=ModelState.LOADING,
        transition_status=TransitionStatus.IN_PROGRESS,
        available=True,
        grpc_endpoint=GRPC,
    )
    later = _isvc(moving, now_s=T1 + 60, previous=loaded)
    assert [c["lastTransitionTime"] for c in later["conditions"]] == [T1_TEXT, T1_TEXT]
    assert later["modelStatus"]["states"]["targetModelState"] == "Loading"
    assert "restUrl" not in later["components"]["predictor"], "no REST listener: no restUrl"


def test_a_new_failure_is_timed_anew_and_the_same_one_is_not() -> None:
    def refused(reason: FailureReason, message: str) -> PredictorStatus:
        return PredictorStatus.refused(reason, message, generation=1, model_id=REVISION)

    first = _isvc(refused(FailureReason.RUNTIME_UNHEALTHY, "starting"), now_s=T0)
    same = _isvc(refused(FailureReason.RUNTIME_UNHEALTHY, "starting"), now_s=T1, previous=first)
    assert same["modelStatus"]["lastFailureInfo"]["time"] == T0_TEXT
    other = _isvc(refused(FailureReason.RUNTIME_UNHEALTHY, "exited"), now_s=T1, previous=first)
    assert other["modelStatus"]["lastFailureInfo"]["time"] == T1_TEXT
    # Still False: the condition's time stays.
    assert _ready(other)["lastTransitionTime"] == T0_TEXT


def test_a_status_stored_in_the_old_flat_shape_is_rewritten() -> None:
    old = {"observedGeneration": 2, "activeModelState": "Loaded", "available": True}
    document = _isvc(LOADED, now_s=T1, previous=old)
    assert _ready(document) == {"type": "Ready", "status": "True", "lastTransitionTime": T1_TEXT}
    assert "activeModelState" not in document


def test_skipped_resources_and_runtimes_keep_their_documents() -> None:
    skipped = SkippedStatus(observed_generation=4, message="not ModelMesh's")
    assert status_document(skipped, kind="InferenceService", now_s=T0) == {
        "skipped": True,
        "message": "not ModelMesh's",
        "observedGeneration": 4,
    }
    verdict = RuntimeVerdict(accepted=True, replicas=2)
    assert status_document(verdict, kind="ServingRuntime", now_s=T0) == {
        "accepted": True,
        "message": "",
        "replicas": 2,
    }


def test_find_condition_reads_what_the_serialiser_wrote() -> None:
    document = _isvc(LOADED)
    predictor_ready = find_condition(document, "PredictorReady")
    assert predictor_ready is not None
    assert predictor_ready["status"] == str(ConditionStatus.TRUE)
    assert find_condition(document, "IngressReady") is None
    assert find_condition({"conditions": "not a list"}, "Ready") is None
