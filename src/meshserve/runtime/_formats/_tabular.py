"""What the tabular formats (sklearn, xgboost, lightgbm) share.

They take one 2-D numeric input, whatever its name, and give ``predict``
and, for classifiers, ``predict_proba``. The format modules supply only an
``Estimator``: the library calls behind those names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from meshserve.errors import InvalidRequestError, TensorError
from meshserve.protocol.datatypes import Datatype, datatype_of, numpy_dtype
from meshserve.protocol.inference import Tensor, TensorMetadata
from meshserve.runtime._formats._library_errors import predict_failure
from meshserve.runtime._formats._text import bytes_array, quoted

__all__ = [
    "INPUT_NAME",
    "PREDICT",
    "PREDICT_PROBA",
    "Estimator",
    "TabularModel",
    "label_datatype",
    "select_outputs",
]

INPUT_NAME = "input-0"
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"


class Estimator(Protocol):
    """The library side of a tabular model."""

    def compute(self, matrix: np.ndarray, names: Sequence[str]) -> Mapping[str, np.ndarray]:
        """The arrays of the outputs ``names`` for the rows of ``matrix``."""
        ...


def label_datatype(labels: np.ndarray) -> Datatype:
    """The datatype of class labels on the wire, as MLServer's codec gives
    it: the labels' own (INT32 labels stay INT32), strings as BYTES."""
    try:
        return datatype_of(labels)
    except ValueError:  # complex, datetime...: the closest the wire carries
        return Datatype.FP64


def select_outputs(available: Sequence[str], requested: Sequence[str]) -> list[str]:
    """The outputs to compute, in request order; all when none are named."""
    if not requested:
        return list(available)
    unknown = [name for name in requested if name not in available]
    if unknown:
        raise InvalidRequestError(
            f"unknown output(s) {quoted(unknown)}; this model's outputs are {quoted(available)}"
        )
    return list(dict.fromkeys(requested))


@dataclass(frozen=True, slots=True)
class TabularModel:
    """A loaded tabular model (see :class:`LoadedModel`)."""

    platform: str
    library: str
    estimator: Estimator
    n_features: int
    """-1 when the library does not say."""
    input_datatype: Datatype
    """The datatype advertised in metadata; any numeric input is accepted."""
    compute_dtype: np.dtype[np.generic]
    """The dtype rows are converted to before they reach the library."""
    metadata_outputs: tuple[TensorMetadata, ...]
    size_bytes: int

    @property
    def metadata_inputs(self) -> tuple[TensorMetadata, ...]:
        return (TensorMetadata(INPUT_NAME, self.input_datatype, (-1, self.n_features)),)

    def predict(self, inputs: Sequence[Tensor], *, outputs: Sequence[str] = ()) -> list[Tensor]:
        if len(inputs) != 1:
            sent = quoted([t.name for t in inputs]) if inputs else "none"
            raise InvalidRequestError(
                f"this {self.library} model takes exactly one input tensor "
                f"[rows, features], got {len(inputs)} ({sent})"
            )
        matrix = self._matrix(inputs[0])
        by_name = {meta.name: meta for meta in self.metadata_outputs}
        names = select_outputs(list(by_name), outputs)
        try:
            arrays = self.estimator.compute(matrix, names)
        except Exception as exc:
            raise predict_failure(self.library, exc) from exc
        return [_tensor(by_name[name], arrays[name]) for name in names]

    def _matrix(self, tensor: Tensor) -> np.ndarray:
        data = tensor.data
        if tensor.datatype is Datatype.BYTES or data.dtype.kind in ("U", "S", "O"):
            raise TensorError(
                tensor.name, f"{tensor.datatype} input is not supported; this model needs numbers"
            )
        if data.ndim == 1:
            data = data.reshape(1, -1)
        elif data.ndim != 2:
            raise TensorError(
                tensor.name,
                f"expects a 2-D tensor [rows, features], got shape {list(tensor.shape)}",
            )
        if self.n_features >= 0 and data.shape[1] != self.n_features:
            raise TensorError(
                tensor.name, f"expects {self.n_features} features, got {data.shape[1]}"
            )
        return np.ascontiguousarray(data, dtype=self.compute_dtype)


def _tensor(meta: TensorMetadata, array: np.ndarray) -> Tensor:
    if meta.datatype is Datatype.BYTES:
        return Tensor(meta.name, meta.datatype, bytes_array(array))
    return Tensor(meta.name, meta.datatype, np.asarray(array, dtype=numpy_dtype(meta.datatype)))
