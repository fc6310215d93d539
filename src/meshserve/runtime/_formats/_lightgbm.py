"""LightGBM models in LightGBM's text format.

As with XGBoost the objective decides the outputs, and a classifier's
``predict`` is the class index (LightGBM keeps no labels):

==============================  ===================  ===================
objective                       predict              predict_proba
==============================  ===================  ===================
binary                          INT64, p > 0.5       FP64 [N, 2]
multiclass, multiclassova       INT64, argmax        FP64 [N, K]
anything else                   FP64                 -
==============================  ===================  ===================

Rows are handed to LightGBM as float64: its thresholds are doubles, and
float32 inputs convert exactly, so nothing is lost whatever is sent.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import TensorMetadata
from meshserve.runtime._formats import _sizing
from meshserve.runtime._formats._artifact import Artifact
from meshserve.runtime._formats._imports import require
from meshserve.runtime._formats._library_errors import load_failed
from meshserve.runtime._formats._tabular import PREDICT, PREDICT_PROBA, TabularModel

__all__ = ["load"]

_MULTICLASS = ("multiclass", "multiclassova")
_END_OF_TREES = b"end of trees"
_PARAMETERS = b"\nparameters:"
_END_OF_PARAMETERS = b"\nend of parameters"


def load(artifact: Artifact) -> TabularModel:
    lgb = require("lightgbm", model_type="lightgbm", extra="lightgbm")
    try:
        _check_complete(artifact.path)
        booster = lgb.Booster(model_file=str(artifact.path))
        objective = str(booster.params.get("objective", "")).split(" ", 1)[0]
        n_classes = int(booster.num_model_per_iteration())
        n_features = int(booster.num_feature())
    except Exception as exc:
        raise load_failed("lightgbm", artifact.path, exc) from exc
    # The model file is LightGBM's own serialization of what it holds.
    size = _sizing.apply(_sizing.LIGHTGBM_RULE, artifact.disk_size)
    return TabularModel(
        platform="lightgbm",
        library="lightgbm",
        estimator=_LightGBMEstimator(booster, objective=objective),
        n_features=n_features,
        input_datatype=Datatype.FP32,
        compute_dtype=np.dtype(np.float64),
        metadata_outputs=_outputs(objective, n_classes=n_classes),
        size_bytes=size,
    )


def _check_complete(path: pathlib.Path) -> None:
    """Refuse a truncated model file before LightGBM reads it.

    LightGBM (4.x) finds its trees at the offsets the header's
    ``tree_sizes`` gives and reads past the end of a truncated file: the
    process dies with a segmentation fault instead of an error. A complete
    file has ``end of trees`` right after the trees and, when it has a
    parameters section, that section's end marker.
    """
    with path.open("rb") as f:
        first = f.readline()
        if first.strip() != b"tree":
            raise ValueError("not a LightGBM text model (the first line is not 'tree')")
        offset = len(first)
        sizes: list[int] | None = None
        for line in f:
            offset += len(line)
            if line.startswith(b"tree_sizes="):
                sizes = [int(size) for size in line[len(b"tree_sizes=") :].split()]
            elif not line.strip():
                break
        else:
            raise ValueError("the file ends inside its header")
        if sizes is None:
            return  # older files have no offsets; LightGBM reads them line by line
        f.seek(offset + sum(sizes))
        if f.read(len(_END_OF_TREES)) != _END_OF_TREES:
            raise ValueError(
                f"the file is truncated or damaged: its {len(sizes)} trees should end at "
                f"byte {offset + sum(sizes)} with '{_END_OF_TREES.decode()}'"
            )
        # What follows (feature importances, parameters) is a few KB; a cut
        # inside the parameters crashes LightGBM as well.
        tail = f.read()
    if _PARAMETERS in tail and _END_OF_PARAMETERS not in tail:
        raise ValueError("the file is truncated inside its parameters")


def _outputs(objective: str, *, n_classes: int) -> tuple[TensorMetadata, ...]:
    label = TensorMetadata(PREDICT, Datatype.INT64, (-1,))
    if objective == "binary":
        return (label, TensorMetadata(PREDICT_PROBA, Datatype.FP64, (-1, 2)))
    if objective in _MULTICLASS:
        return (label, TensorMetadata(PREDICT_PROBA, Datatype.FP64, (-1, n_classes)))
    return (TensorMetadata(PREDICT, Datatype.FP64, (-1,)),)


class _LightGBMEstimator:
    def __init__(self, booster: Any, *, objective: str) -> None:
        self._booster = booster
        self._objective = objective

    def compute(self, matrix: np.ndarray, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        raw = np.asarray(self._booster.predict(matrix))
        results: dict[str, np.ndarray] = {}
        if self._objective == "binary":
            results[PREDICT] = (raw > 0.5).astype(np.int64)
            if PREDICT_PROBA in names:
                results[PREDICT_PROBA] = np.column_stack([1.0 - raw, raw])
        elif self._objective in _MULTICLASS:
            results[PREDICT] = np.argmax(raw, axis=1).astype(np.int64)
            results[PREDICT_PROBA] = raw
        else:
            results[PREDICT] = raw
        return results
