"""XGBoost models saved as JSON or UBJSON (``Booster`` or the sklearn API).

Outputs follow MLServer's xgboost runtime (ModelMesh Serving's runtime for
xgboost), which loads a file as ``XGBRegressor`` unless the file says it
was saved by ``XGBClassifier``:

- **A booster** (``xgb.train(...).save_model``), and a regressor: ``predict``
  is the booster's own output, FP32: probabilities for ``binary:logistic``
  (``[N]``) and ``multi:softprob`` (``[N, K]``), margins, values or class
  numbers for the other objectives. For the two probability objectives
  ``predict_proba`` (FP32 ``[N, 2]`` / ``[N, K]``) follows it, which
  MLServer does not offer for these files.
- **An XGBClassifier** (its file records ``_estimator_type: classifier``):
  ``predict`` is the class index, INT64 (XGBoost keeps no labels: its
  sklearn API encodes them as 0..K-1), and ``predict_proba`` FP32.

==========================  =====================================  ==================
file, objective             predict                                predict_proba
==========================  =====================================  ==================
booster binary:logistic     FP32 p(class 1) [N]                    FP32 [N, 2]
booster multi:softprob      FP32 [N, K]                            FP32 [N, K]
booster, other objectives   FP32, the booster's output             -
classifier binary:logistic  INT64, p > 0.5                         FP32 [N, 2]
classifier multi:softprob   INT64, argmax                          FP32 [N, K]
classifier logitraw/hinge/  INT64                                  -
softmax
==========================  =====================================  ==================
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import TensorMetadata
from meshserve.runtime._formats import _sizing, _ubjson
from meshserve.runtime._formats._artifact import Artifact, ModelFormat
from meshserve.runtime._formats._imports import require
from meshserve.runtime._formats._library_errors import load_failed
from meshserve.runtime._formats._tabular import PREDICT, PREDICT_PROBA, TabularModel

__all__ = ["load"]

_LABEL_ONLY = ("binary:logitraw", "binary:hinge", "multi:softmax")
_PROBABILITIES = ("binary:logistic", "multi:softprob")
# The suffixes XGBoost reads by name; any other (model.bst) is read from
# bytes, where XGBoost tells JSON from UBJSON by content.
_OWN_SUFFIXES = {ModelFormat.XGBOOST_JSON: ".json", ModelFormat.XGBOOST_UBJ: ".ubj"}
# Where XGBoost's sklearn API records the estimator it saved.
_SKLEARN_ATTRIBUTE = "scikit_learn"


def load(artifact: Artifact) -> TabularModel:
    xgb = require("xgboost", model_type="xgboost", extra="xgboost")
    try:
        if artifact.format is ModelFormat.XGBOOST_UBJ:
            _ubjson.check_ubjson(artifact.path)
        booster = _read(xgb, artifact)
        config = json.loads(booster.save_config())
        objective = str(config["learner"]["objective"]["name"])
        params = config["learner"]["learner_model_param"]
        n_classes = int(params.get("num_class", 0))
        n_targets = int(params.get("num_target", 1))
        n_features = int(booster.num_features())
        classifier = _saved_as_classifier(booster)
        serialized = len(booster.save_raw(raw_format="ubj"))
    except Exception as exc:
        raise load_failed("xgboost", artifact.path, exc) from exc
    outputs = (
        _classifier_outputs(objective, n_classes=n_classes)
        if classifier
        else _booster_outputs(objective, n_classes=n_classes, n_targets=n_targets)
    )
    return TabularModel(
        platform="xgboost",
        library="xgboost",
        estimator=_XGBoostEstimator(booster, objective=objective, classifier=classifier),
        n_features=n_features,
        input_datatype=Datatype.FP32,
        compute_dtype=np.dtype(np.float32),
        metadata_outputs=outputs,
        size_bytes=_sizing.apply(_sizing.XGBOOST_UBJ_RULE, serialized),
    )


def _read(xgb: Any, artifact: Artifact) -> Any:
    if artifact.path.suffix.lower() == _OWN_SUFFIXES[artifact.format]:
        return xgb.Booster(model_file=str(artifact.path))
    booster = xgb.Booster()
    booster.load_model(bytearray(artifact.path.read_bytes()))
    return booster


def _saved_as_classifier(booster: Any) -> bool:
    recorded = booster.attr(_SKLEARN_ATTRIBUTE)
    if not recorded:
        return False
    try:
        return bool(json.loads(recorded).get("_estimator_type") == "classifier")
    except (ValueError, AttributeError):
        return False  # not what the sklearn API writes: read it as a booster


def _classifier_outputs(objective: str, *, n_classes: int) -> tuple[TensorMetadata, ...]:
    label = TensorMetadata(PREDICT, Datatype.INT64, (-1,))
    if objective == "binary:logistic":
        return (label, TensorMetadata(PREDICT_PROBA, Datatype.FP32, (-1, 2)))
    if objective == "multi:softprob":
        return (label, TensorMetadata(PREDICT_PROBA, Datatype.FP32, (-1, n_classes)))
    if objective in _LABEL_ONLY:
        return (label,)
    # A classifier with a regression objective predicts like a booster.
    return _booster_outputs(objective, n_classes=n_classes, n_targets=1)


def _booster_outputs(
    objective: str, *, n_classes: int, n_targets: int
) -> tuple[TensorMetadata, ...]:
    if objective == "binary:logistic":
        return (
            TensorMetadata(PREDICT, Datatype.FP32, (-1,)),
            TensorMetadata(PREDICT_PROBA, Datatype.FP32, (-1, 2)),
        )
    if objective == "multi:softprob":
        shape = (-1, n_classes)
        return (
            TensorMetadata(PREDICT, Datatype.FP32, shape),
            TensorMetadata(PREDICT_PROBA, Datatype.FP32, shape),
        )
    return (TensorMetadata(PREDICT, Datatype.FP32, (-1,) if n_targets <= 1 else (-1, n_targets)),)


class _XGBoostEstimator:
    def __init__(self, booster: Any, *, objective: str, classifier: bool) -> None:
        self._booster = booster
        self._objective = objective
        self._labels = classifier and objective in (*_PROBABILITIES, *_LABEL_ONLY)

    def compute(self, matrix: np.ndarray, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        # inplace_predict is thread-safe and skips building a DMatrix.
        raw = np.asarray(self._booster.inplace_predict(matrix, validate_features=False))
        results: dict[str, np.ndarray] = {}
        if self._labels:
            results[PREDICT] = _label(raw, self._objective)
        else:
            results[PREDICT] = raw.astype(np.float32, copy=False)
        if PREDICT_PROBA in names:
            if self._objective == "binary:logistic":
                results[PREDICT_PROBA] = np.column_stack([1.0 - raw, raw]).astype(np.float32)
            elif self._objective == "multi:softprob":
                results[PREDICT_PROBA] = raw
        return results


def _label(raw: np.ndarray, objective: str) -> np.ndarray:
    """The class index XGBClassifier.predict gives for ``raw``."""
    if objective == "binary:logistic":
        labels = raw > 0.5
    elif objective == "multi:softprob":
        labels = np.argmax(raw, axis=1)
    elif objective == "binary:logitraw":
        labels = raw > 0.0
    else:
        labels = raw
    return np.asarray(labels, dtype=np.int64)
