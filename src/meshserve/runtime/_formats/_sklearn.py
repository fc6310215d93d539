"""scikit-learn models: ``.skops`` always, pickle (``.joblib``/``.pkl``) on request.

skops files are checked before loading: every type they name must be
trusted. Types from scikit-learn, numpy and scipy are, as are those skops
trusts itself and those the runtime lists in ``trusted_types``; anything
else refuses the load before it starts. Pickle files can run arbitrary code
when loaded, so they load only in a runtime started with ``--allow-pickle``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from meshserve.errors import CorruptModelError, LoadNotAttemptedError, PickleRefusedError
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import TensorMetadata
from meshserve.runtime._formats import _sizing
from meshserve.runtime._formats._artifact import Artifact, ModelFormat
from meshserve.runtime._formats._imports import require
from meshserve.runtime._formats._library_errors import load_failed
from meshserve.runtime._formats._tabular import (
    PREDICT,
    PREDICT_PROBA,
    TabularModel,
    label_datatype,
)

__all__ = ["MLSERVER_RUNTIME", "PICKLE_RUNTIME", "load"]

_TRUSTED_MODULES = ("sklearn", "numpy", "scipy")
# The shipped runtimes that load pickles, as controller._builtin_runtimes
# names them (the runtime layer cannot import the controller; a unit test
# keeps the two equal).
PICKLE_RUNTIME = "meshserve-pickle"
MLSERVER_RUNTIME = "meshserve-mlserver"


def load(artifact: Artifact, *, allow_pickle: bool, trusted_types: Sequence[str]) -> TabularModel:
    if artifact.format is ModelFormat.PICKLE:
        model = _load_pickle(artifact.path, allow_pickle=allow_pickle)
    else:
        model = _load_skops(artifact.path, trusted_types=trusted_types)
    if not callable(getattr(model, "predict", None)):
        raise CorruptModelError(
            f"sklearn model {artifact.path} could not be loaded: it holds a "
            f"{type(model).__module__}.{type(model).__qualname__}, which has no predict method"
        )
    return TabularModel(
        platform="sklearn",
        library="scikit-learn",
        estimator=_SklearnEstimator(model),
        n_features=int(getattr(model, "n_features_in_", -1)),
        input_datatype=Datatype.FP64,
        compute_dtype=np.dtype(np.float64),
        metadata_outputs=_outputs(model),
        size_bytes=_sizing.apply(_sizing.SKLEARN_RULE, _sizing.reachable_bytes(model)),
    )


def _load_skops(path: pathlib.Path, *, trusted_types: Sequence[str]) -> Any:
    sio = require("skops.io", model_type="sklearn", extra="sklearn")
    try:
        untrusted: list[str] = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise load_failed("sklearn", path, exc) from exc
    trusted = set(trusted_types)
    refused = [
        name
        for name in untrusted
        if name not in trusted and name.split(".", 1)[0] not in _TRUSTED_MODULES
    ]
    if refused:
        raise LoadNotAttemptedError(
            f"sklearn model {path} names types that are not trusted: {', '.join(refused)}. "
            "Loading them could run their code; if you trust this model, add these names to "
            "the runtime's trusted_types setting"
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise load_failed("sklearn", path, exc) from exc


def _load_pickle(path: pathlib.Path, *, allow_pickle: bool) -> Any:
    if not allow_pickle:
        raise PickleRefusedError(
            f"sklearn model {path} is a joblib/pickle file, and loading a pickle can execute "
            "arbitrary code, so this runtime does not load it. To serve it, name a pickle "
            f"runtime in the resource: InferenceService spec.predictor.model.runtime: "
            f"{PICKLE_RUNTIME} (or {MLSERVER_RUNTIME}), Predictor spec.runtime.name: "
            f"{PICKLE_RUNTIME}; without resources, run the runtime out of process with "
            "--allow-pickle (meshserve up --runtime-host process --allow-pickle). Or convert "
            "it to skops, which this runtime loads: skops.io.dump(model, 'model.skops')"
        )
    joblib = require("joblib", model_type="sklearn", extra="sklearn")
    try:
        return joblib.load(path)
    except Exception as exc:
        raise load_failed("sklearn", path, exc) from exc


def _outputs(model: Any) -> tuple[TensorMetadata, ...]:
    n_outputs = int(getattr(model, "n_outputs_", 1))
    predict_shape = (-1,) if n_outputs == 1 else (-1, n_outputs)
    classes = getattr(model, "classes_", None)
    if isinstance(classes, np.ndarray):
        outputs = [TensorMetadata(PREDICT, label_datatype(classes), predict_shape)]
        if hasattr(model, "predict_proba"):
            outputs.append(TensorMetadata(PREDICT_PROBA, Datatype.FP64, (-1, len(classes))))
        return tuple(outputs)
    if isinstance(classes, list) and classes:
        # Multi-output classifiers: one class list per output; labels only.
        return (TensorMetadata(PREDICT, label_datatype(classes[0]), predict_shape),)
    if _estimator_type(model) == "clusterer":
        return (TensorMetadata(PREDICT, Datatype.INT64, predict_shape),)
    return (TensorMetadata(PREDICT, Datatype.FP64, predict_shape),)


def _estimator_type(model: Any) -> str | None:
    tags = getattr(model, "__sklearn_tags__", None)
    try:
        return None if tags is None else getattr(tags(), "estimator_type", None)
    except Exception:  # a third-party estimator with broken tags is still servable
        return None


class _SklearnEstimator:
    def __init__(self, model: Any) -> None:
        self._model = model

    def compute(self, matrix: np.ndarray, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        results: dict[str, np.ndarray] = {}
        for name in names:
            method = self._model.predict if name == PREDICT else self._model.predict_proba
            results[name] = np.asarray(method(matrix))
        return results
