"""The ``data`` member of a REST tensor <-> a numpy array.

``data`` is a JSON array, flat or nested to match the shape. BOOL is
true/false, BYTES are UTF-8 strings, FP16/BF16 are ordinary numbers.

JSON has no NaN or infinity. meshserve writes them as the strings "NaN",
"Infinity" and "-Infinity" (numpy and tritonclient read those back as
floats) and reads those strings, ``null`` (what orjson and JavaScript write
for NaN) and the bare tokens Python's json module writes (via a fallback
parser, see ``load_json``), for the floating-point datatypes only. A finite
number too large for its datatype (70000 as FP16) is refused rather than
read as an infinity the client did not send.

``data`` may nest no deeper than the shape has dimensions (flat is always
fine), so that a hostile body cannot make numpy build a 1,000-level array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meshserve.errors import TensorError, quote_client_value
from meshserve.protocol.codecs._checks import (
    FLOAT_DATATYPES,
    INT_RANGES,
    check_array,
    element_count,
    reshape,
    shape_text,
)
from meshserve.protocol.codecs._raw import element_bytes
from meshserve.protocol.datatypes import Datatype, numpy_dtype

__all__ = ["array_from_json", "json_from_array"]

_NON_FINITE_IN = {
    "NaN": float("nan"),
    "nan": float("nan"),
    "Infinity": float("inf"),
    "inf": float("inf"),
    "-Infinity": float("-inf"),
    "-inf": float("-inf"),
}


def array_from_json(
    name: str, datatype: Datatype, shape: tuple[int, ...], data: object
) -> np.ndarray:
    """The array of ``shape`` that the JSON value ``data`` holds.

    Raises TensorError when ``data`` is not an array, is ragged, holds values
    of the wrong kind or out of range, or its element count (or nesting)
    does not match ``shape``.
    """
    count = element_count(name, shape)
    if not isinstance(data, list):
        raise TensorError(name, f"data is a {_kind(data)}; expected a JSON array, flat or nested")
    _check_depth(name, data, shape)
    if datatype is Datatype.BYTES:
        array = _bytes_array(name, data)
    elif datatype is Datatype.BOOL:
        array = _bool_array(name, data)
    elif datatype in FLOAT_DATATYPES:
        array = _float_array(name, datatype, data)
    else:
        array = _int_array(name, datatype, data)
    return _fit(name, array, shape, count)


def json_from_array(
    name: str, datatype: Datatype, array: np.ndarray, *, numpy_ok: bool = False
) -> list[Any] | np.ndarray:
    """The flat JSON ``data`` for ``array``.

    With ``numpy_ok`` a flat numpy array is returned where orjson's
    OPT_SERIALIZE_NUMPY can write it directly (saving a Python object per
    element). Raises TensorError for a BYTES element that is not UTF-8.
    """
    check_array(name, datatype, array)
    flat = array.ravel()
    if datatype is Datatype.BYTES:
        return [_text(name, i, v) for i, v in enumerate(flat.tolist())]
    if datatype in FLOAT_DATATYPES and not bool(np.isfinite(flat).all()):
        return [_float_out(v) for v in flat.tolist()]
    if numpy_ok and datatype is not Datatype.BF16:
        # orjson wants native byte order and C-contiguous memory.
        return np.ascontiguousarray(flat, dtype=numpy_dtype(datatype))
    values: list[Any] = flat.tolist()
    return values


def _check_depth(name: str, data: list[Any], shape: tuple[int, ...]) -> None:
    # The first elements' chain is as deep as numpy can find dimensions:
    # data nested deeper elsewhere is ragged, which numpy reports itself.
    allowed = max(1, len(shape))
    depth, item = 1, data
    while item and isinstance(item[0], list):
        depth, item = depth + 1, item[0]
        if depth > allowed:
            raise TensorError(
                name,
                f"data nests deeper than shape {shape_text(shape)} has dimensions; "
                "expected it flat or nested to match the shape",
            )


def _fit(name: str, array: np.ndarray, shape: tuple[int, ...], count: int) -> np.ndarray:
    if array.shape == shape:
        return array
    if array.ndim == 1 and array.size == count:
        return reshape(name, array, shape)
    nesting = f" nested as {shape_text(array.shape)}" if array.ndim > 1 else ""
    raise TensorError(
        name,
        f"data holds {array.size} elements{nesting}; shape {shape_text(shape)} needs {count}, "
        "given flat or nested to match the shape",
    )


def _infer(data: list[Any]) -> np.ndarray | None:
    """numpy's own reading of ``data``: fast, but None when it is ragged."""
    try:
        return np.array(data)
    except (ValueError, TypeError, OverflowError):
        return None


def _objects(name: str, data: list[Any]) -> np.ndarray:
    """``data`` as an object array of its leaves, for the slow, checked paths."""
    try:
        array = np.array(data, dtype=np.object_)
    except ValueError:
        array = None
    if array is None or any(isinstance(v, list) for v in array.flat):
        raise TensorError(
            name,
            "data is ragged or mixes nesting depths; expected a flat array or one nested "
            "to match the shape",
        )
    return array


def _int_array(name: str, datatype: Datatype, data: list[Any]) -> np.ndarray:
    target = numpy_dtype(datatype)
    inferred = _infer(data)
    if inferred is not None and (inferred.dtype.kind in "iu" or inferred.size == 0):
        low, high = INT_RANGES[datatype]
        if inferred.size and (int(inferred.min()) < low or int(inferred.max()) > high):
            _check_range(name, datatype, inferred.ravel().tolist())
        return inferred.astype(target)
    # Floats, bools, strings, or integers too large for one numpy dtype.
    objects = _objects(name, data)
    values = objects.ravel().tolist()
    for index, value in enumerate(values):
        if type(value) is not int:
            raise TensorError(
                name,
                f"element {index} is {quote_client_value(value)}; {datatype} data must be integers",
            )
    _check_range(name, datatype, values)
    return np.array(values, dtype=target).reshape(objects.shape)


def _check_range(name: str, datatype: Datatype, values: list[Any]) -> None:
    low, high = INT_RANGES[datatype]
    for index, value in enumerate(values):
        if not low <= value <= high:
            raise TensorError(
                name,
                f"element {index} is {quote_client_value(value)}, "
                f"out of range for {datatype} [{low}, {high}]",
            )


def _bool_array(name: str, data: list[Any]) -> np.ndarray:
    inferred = _infer(data)
    if inferred is not None and (inferred.dtype.kind == "b" or inferred.size == 0):
        return inferred.astype(np.bool_)
    for index, value in enumerate(_objects(name, data).ravel().tolist()):
        if not isinstance(value, bool):
            raise TensorError(
                name,
                f"element {index} is {quote_client_value(value)}; BOOL data must be true or false",
            )
    raise TensorError(name, "BOOL data could not be read; expected true/false values")


def _float_array(name: str, datatype: Datatype, data: list[Any]) -> np.ndarray:
    inferred = _infer(data)
    if inferred is not None and (inferred.dtype.kind in "iuf" or inferred.size == 0):
        return _narrowed(name, datatype, inferred)
    objects = _objects(name, data)
    values = [_float_in(name, datatype, i, v) for i, v in enumerate(objects.ravel().tolist())]
    wide = np.array(values, dtype=np.float64).reshape(objects.shape)
    return _narrowed(name, datatype, wide)


def _narrowed(name: str, datatype: Datatype, wide: np.ndarray) -> np.ndarray:
    """``wide`` as ``datatype``; TensorError for a finite value that only
    an infinity could hold there."""
    target = numpy_dtype(datatype)
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = wide.astype(target)
    if narrow.size and not bool(np.isfinite(narrow).all()):
        overflowed = np.flatnonzero(np.isfinite(wide) & ~np.isfinite(narrow))
        if overflowed.size:
            index = int(overflowed[0])
            raise TensorError(
                name,
                f"element {index} is {quote_client_value(wide.flat[index].item())}, too large for "
                f"{datatype}: it would be read as an infinity",
            )
    return narrow


def _float_in(name: str, datatype: Datatype, index: int, value: object) -> float:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise TensorError(
                name, f"element {index} is {quote_client_value(value)}, out of range of any float"
            ) from None
    elif value is None:
        return float("nan")
    elif isinstance(value, str) and value in _NON_FINITE_IN:
        return _NON_FINITE_IN[value]
    raise TensorError(
        name,
        f"element {index} is {quote_client_value(value)}; {datatype} data must be numbers "
        '(or null, "NaN", "Infinity", "-Infinity")',
    )


def _float_out(value: float) -> float | str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return value


def _bytes_array(name: str, data: list[Any]) -> np.ndarray:
    objects = _objects(name, data)
    flat = np.empty(objects.size, dtype=np.object_)
    for index, value in enumerate(objects.ravel().tolist()):
        if not isinstance(value, str):
            raise TensorError(
                name,
                f"element {index} is {quote_client_value(value)}; BYTES data must be JSON strings",
            )
        try:
            flat[index] = value.encode("utf-8")
        except UnicodeEncodeError:
            raise TensorError(
                name,
                f"element {index} is not valid Unicode (a lone surrogate); BYTES data "
                "in JSON must be UTF-8 text: send other bytes as binary data",
            ) from None
    return flat.reshape(objects.shape)


def _text(name: str, index: int, element: object) -> str:
    if isinstance(element, str):
        return element
    try:
        return element_bytes(name, index, element).decode("utf-8")
    except UnicodeDecodeError:
        raise TensorError(
            name,
            f"BYTES element {index} is not valid UTF-8, and JSON carries BYTES as strings; "
            "request this tensor as binary data instead",
        ) from None


def _kind(value: object) -> str:
    return {dict: "object", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )
