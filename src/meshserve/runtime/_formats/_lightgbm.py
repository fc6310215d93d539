"""LightGBM models in LightGBM's text format, under any file name.

Outputs follow MLServer's lightgbm runtime (ModelMesh Serving's runtime for
lightgbm), which answers every model with the booster's own prediction:
``predict`` is ``Booster.predict``, FP64, whatever the objective. For
classifiers ``predict_proba`` follows it, which MLServer does not offer:

==============================  ========================  ===================
objective                       predict                   predict_proba
==============================  ========================  ===================
binary                          FP64 p(class 1) [N]       FP64 [N, 2]
multiclass, multiclassova       FP64 [N, K]               FP64 [N, K]
anything else                   FP64 [N]                  -
==============================  ========================  ===================

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
    if objective == "binary":
        return (
            TensorMetadata(PREDICT, Datatype.FP64, (-1,)),
            TensorMetadata(PREDICT_PROBA, Datatype.FP64, (-1, 2)),
        )
    if objective in _MULTICLASS:
        shape = (-1, n_classes)
        return (
            TensorMetadata(PREDICT, Datatype.FP64, shape),
            TensorMetadata(PREDICT_PROBA, Datatype.FP64, shape),
        )
    return (TensorMetadata(PREDICT, Datatype.FP64, (-1,)),)


class _LightGBMEstimator:
    def __init__(self, booster: Any, *, objective: str) -> None:
        self._booster = booster
        self._objective = objective

    def compute(self, matrix: np.ndarray, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        raw = np.asarray(self._booster.predict(matrix))
        results: dict[str, np.ndarray] = {PREDICT: raw}
        if PREDICT_PROBA in names:
            if self._objective == "binary":
                results[PREDICT_PROBA] = np.column_stack([1.0 - raw, raw])
            elif self._objective in _MULTICLASS:
                results[PREDICT_PROBA] = raw
        return results
