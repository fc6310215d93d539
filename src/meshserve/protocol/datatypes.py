"""The v2 tensor datatypes and their numpy counterparts.

BF16 has no numpy dtype of its own; ``ml_dtypes.bfloat16`` supplies one, so a
BF16 tensor is an ordinary array everywhere in meshserve. BYTES tensors are
numpy object arrays whose elements are ``bytes``.
"""

from __future__ import annotations

import enum

import ml_dtypes
import numpy as np

__all__ = ["Datatype", "datatype_of", "numpy_dtype"]


class Datatype(enum.StrEnum):
    """A tensor datatype as spelled on the wire."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BF16 = "BF16"
    BYTES = "BYTES"

    @property
    def itemsize(self) -> int | None:
        """Bytes per element in raw form; None for BYTES (length-prefixed)."""
        if self is Datatype.BYTES:
            return None
        return numpy_dtype(self).itemsize


_TO_NUMPY: dict[Datatype, np.dtype[np.generic]] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BF16: np.dtype(ml_dtypes.bfloat16),
    Datatype.BYTES: np.dtype(np.object_),
}
_FROM_NUMPY: dict[np.dtype[np.generic], Datatype] = {v: k for k, v in _TO_NUMPY.items()}


def numpy_dtype(datatype: Datatype) -> np.dtype[np.generic]:
    """The numpy dtype that holds ``datatype`` (object for BYTES)."""
    return _TO_NUMPY[datatype]


def datatype_of(array: np.ndarray) -> Datatype:
    """The v2 datatype of a numpy array; str/bytes arrays become BYTES.

    Raises ``ValueError`` for dtypes the protocol cannot carry (complex,
    datetime...).
    """
    dtype = array.dtype
    if dtype.kind in ("S", "U", "O"):
        return Datatype.BYTES
    try:
        return _FROM_NUMPY[dtype.newbyteorder("=")]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no v2 datatype") from None
