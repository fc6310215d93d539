"""XGBoost models saved as JSON or UBJSON (``Booster`` or the sklearn API).

The model's objective decides its outputs. XGBoost keeps no class labels
(its sklearn API needs them encoded as 0..K-1), so ``predict`` of a
classifier is the class index.

=================  ===========================  =========================
objective          predict                      predict_proba
=================  ===========================  =========================
binary:logistic    INT64, p > 0.5               FP32 [N, 2]
binary:logitraw    INT64, margin > 0            -
binary:hinge       INT64                        -
multi:softprob     INT64, argmax                FP32 [N, K]
multi:softmax      INT64                        -
anything else      FP32 (the booster's output)  -
=================  ===========================  =========================
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


def load(artifact: Artifact) -> TabularModel:
    xgb = require("xgboost", model_type="xgboost", extra="xgboost")
    try:
        if artifact.format is ModelFormat.XGBOOST_UBJ:
            _ubjson.check_ubjson(artifact.path)
        booster = xgb.Booster(model_file=str(artifact.path))
        config = json.loads(booster.save_config())
        objective = str(config["learner"]["objective"]["name"])
        params = config["learner"]["learner_model_param"]
        n_classes = int(params.get("num_class", 0))
        n_targets = int(params.get("num_target", 1))
        n_features = int(booster.num_features())
        serialized = len(booster.save_raw(raw_format="ubj"))
    except Exception as exc:
        raise load_failed("xgboost", artifact.path, exc) from exc
    return TabularModel(
        platform="xgboost",
        library="xgboost",
        estimator=_XGBoostEstimator(booster, objective=objective),
        n_features=n_features,
        input_datatype=Datatype.FP32,
        compute_dtype=np.dtype(np.float32),
        metadata_outputs=_outputs(objective, n_classes=n_classes, n_targets=n_targets),
        size_bytes=_sizing.apply(_sizing.XGBOOST_UBJ_RULE, serialized),
    )


def _outputs(objective: str, *, n_classes: int, n_targets: int) -> tuple[TensorMetadata, ...]:
    label = TensorMetadata(PREDICT, Datatype.INT64, (-1,))
    if objective == "binary:logistic":
        return (label, TensorMetadata(PREDICT_PROBA, Datatype.FP32, (-1, 2)))
    if objective == "multi:softprob":
        return (label, TensorMetadata(PREDICT_PROBA, Datatype.FP32, (-1, n_classes)))
    if objective in _LABEL_ONLY:
        return (label,)
    shape = (-1,) if n_targets <= 1 else (-1, n_targets)
    return (TensorMetadata(PREDICT, Datatype.FP32, shape),)


class _XGBoostEstimator:
    def __init__(self, booster: Any, *, objective: str) -> None:
        self._booster = booster
        self._objective = objective

    def compute(self, matrix: np.ndarray, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        # inplace_predict is thread-safe and skips building a DMatrix.
        raw = np.asarray(self._booster.inplace_predict(matrix, validate_features=False))
        objective = self._objective
        results: dict[str, np.ndarray] = {}
        if objective == "binary:logistic":
            results[PREDICT] = (raw > 0.5).astype(np.int64)
            if PREDICT_PROBA in names:
                results[PREDICT_PROBA] = np.column_stack([1.0 - raw, raw]).astype(np.float32)
        elif objective == "multi:softprob":
            results[PREDICT] = np.argmax(raw, axis=1).astype(np.int64)
            results[PREDICT_PROBA] = raw
        elif objective == "binary:logitraw":
            results[PREDICT] = (raw > 0.0).astype(np.int64)
        elif objective in _LABEL_ONLY:
            results[PREDICT] = raw.astype(np.int64)
        else:
            results[PREDICT] = raw
        return results
