"""Checks every wire form shares: datatype names, shapes, array dtypes.

Each failure names the tensor, says what was wrong and what was expected,
so a caller can fix the request from the message alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from meshserve.errors import TensorError, quote_client_value
from meshserve.protocol.datatypes import Datatype, datatype_of, numpy_dtype
from meshserve.protocol.inference import Tensor

__all__ = [
    "FLOAT_DATATYPES",
    "INT_RANGES",
    "MAX_RANK",
    "check_array",
    "check_unique_names",
    "element_count",
    "parse_datatype",
    "reshape",
    "shape_text",
]

FLOAT_DATATYPES = frozenset({Datatype.FP16, Datatype.FP32, Datatype.FP64, Datatype.BF16})

INT_RANGES: dict[Datatype, tuple[int, int]] = {
    Datatype.INT8: (-(2**7), 2**7 - 1),
    Datatype.INT16: (-(2**15), 2**15 - 1),
    Datatype.INT32: (-(2**31), 2**31 - 1),
    Datatype.INT64: (-(2**63), 2**63 - 1),
    Datatype.UINT8: (0, 2**8 - 1),
    Datatype.UINT16: (0, 2**16 - 1),
    Datatype.UINT32: (0, 2**32 - 1),
    Datatype.UINT64: (0, 2**64 - 1),
}
"""The inclusive value range of each integer datatype."""

MAX_RANK = 32
"""The most dimensions a tensor may have: numpy's limit for the object
arrays BYTES data is read into (numeric arrays allow 64)."""

_KNOWN = ", ".join(d.value for d in Datatype)


def parse_datatype(name: str, spelled: object) -> Datatype:
    """The Datatype spelled ``spelled``; TensorError if there is none."""
    try:
        if isinstance(spelled, str):
            return Datatype(spelled)
    except ValueError:
        pass
    raise TensorError(
        name, f"unknown datatype {quote_client_value(spelled)}; expected one of {_KNOWN}"
    )


def shape_text(shape: Iterable[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def element_count(name: str, shape: tuple[int, ...]) -> int:
    """The number of elements of ``shape``; TensorError on a negative dimension
    or more than :data:`MAX_RANK` dimensions.

    Python ints, so a hostile shape cannot overflow into a small count.
    """
    if len(shape) > MAX_RANK:
        raise TensorError(
            name, f"shape has {len(shape)} dimensions; a tensor may have at most {MAX_RANK}"
        )
    for dim in shape:
        if dim < 0:
            raise TensorError(
                name,
                f"shape {shape_text(shape)} has negative dimension {dim}; dimensions must be >= 0",
            )
    return math.prod(shape)


def reshape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` (already holding the right number of elements) in ``shape``.

    Only an empty array with absurd dimensions ([0, 2**62]) can fail here.
    """
    try:
        return array.reshape(shape)
    except ValueError as exc:
        raise TensorError(name, f"shape {shape_text(shape)} cannot be held: {exc}") from None


def check_array(name: str, datatype: Datatype, array: np.ndarray) -> None:
    """Refuse an array whose dtype does not hold ``datatype``.

    Encoders never cast: a silent float64 -> FP32 narrowing would change
    the values a caller receives.
    """
    try:
        actual = datatype_of(array)
    except ValueError:
        raise TensorError(
            name, f"data has numpy dtype {array.dtype}, which no v2 datatype can carry"
        ) from None
    if actual is not datatype:
        raise TensorError(
            name,
            f"datatype is {datatype} but the data has numpy dtype {array.dtype} ({actual}); "
            f"expected numpy dtype {_expected_dtype(datatype)}",
        )


def check_unique_names(tensors: Sequence[Tensor]) -> None:
    """Refuse two tensors of one name: the model could see only one of them."""
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name in seen:
            raise TensorError(tensor.name, "appears more than once; tensor names must be unique")
        seen.add(tensor.name)


def _expected_dtype(datatype: Datatype) -> str:
    if datatype is Datatype.BYTES:
        return "object (bytes elements), bytes_ or str_"
    return str(numpy_dtype(datatype))
