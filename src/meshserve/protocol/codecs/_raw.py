"""The raw form of one tensor, shared by gRPC raw contents and REST binary data.

Raw is flat, row-major, little-endian, without padding. BOOL is one byte per
element; a BYTES element is a 4-byte little-endian length and then its bytes.
Decoding wraps the buffer with ``np.frombuffer`` (no copy), so arrays decoded
from ``bytes`` are read-only and may be unaligned when they come from the
middle of a larger body.
"""

from __future__ import annotations

import struct
import sys

import numpy as np

from meshserve.errors import TensorError
from meshserve.protocol.codecs._checks import check_array, element_count, reshape, shape_text
from meshserve.protocol.datatypes import Datatype, numpy_dtype

__all__ = ["decode_raw", "encode_raw"]

_LENGTH = struct.Struct("<I")
_MAX_ELEMENT_BYTES = 2**32 - 1
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"
_WIRE_DTYPE: dict[Datatype, np.dtype[np.generic]] = {
    datatype: numpy_dtype(datatype).newbyteorder("<")
    for datatype in Datatype
    if datatype is not Datatype.BYTES
}

Buffer = bytes | bytearray | memoryview


def encode_raw(name: str, datatype: Datatype, array: np.ndarray) -> bytes:
    """The raw bytes of ``array``, a tensor called ``name`` of ``datatype``.

    Raises TensorError when the array's dtype does not hold ``datatype`` or
    a BYTES element is not bytes/str or is longer than 4 GiB - 1.
    """
    check_array(name, datatype, array)
    if datatype is Datatype.BYTES:
        return _encode_bytes(name, array)
    # astype(copy=False) is free on little-endian hosts; tobytes() makes the
    # single copy and handles non-contiguous views in C order.
    return array.astype(_WIRE_DTYPE[datatype], copy=False).tobytes()


def decode_raw(name: str, datatype: Datatype, shape: tuple[int, ...], data: Buffer) -> np.ndarray:
    """The array of ``shape`` that ``data`` holds in raw form.

    Raises TensorError when the byte length does not match the shape, or a
    BYTES buffer has a truncated length prefix, a truncated element or
    bytes left over after the last element.
    """
    count = element_count(name, shape)
    if datatype is Datatype.BYTES:
        return reshape(name, _decode_bytes(name, shape, count, data), shape)
    wire = _WIRE_DTYPE[datatype]
    expected = count * wire.itemsize
    if len(data) != expected:
        raise TensorError(
            name,
            f"raw data is {len(data)} bytes; shape {shape_text(shape)} of {datatype} "
            f"needs {expected} ({count} elements x {wire.itemsize} bytes)",
        )
    flat = np.frombuffer(data, dtype=wire)
    if datatype is Datatype.BOOL:
        flat = _normalise_bool(flat)
    elif not _LITTLE_ENDIAN_HOST:
        flat = flat.astype(wire.newbyteorder("="))
    return reshape(name, flat, shape)


def _normalise_bool(flat: np.ndarray) -> np.ndarray:
    # The spec says 1 and 0, but a numpy bool holding 2 misbehaves (x == True
    # is False), so any other non-zero byte is read as true.
    octets = flat.view(np.uint8)
    if octets.size and int(octets.max()) > 1:
        normalised: np.ndarray = octets != 0
        return normalised
    return flat


def _encode_bytes(name: str, array: np.ndarray) -> bytes:
    pack = _LENGTH.pack
    parts: list[bytes] = []
    for index, element in enumerate(array.ravel().tolist()):
        octets = element_bytes(name, index, element)
        if len(octets) > _MAX_ELEMENT_BYTES:
            raise TensorError(
                name, f"BYTES element {index} is {len(octets)} bytes; the limit is 2**32 - 1"
            )
        parts.append(pack(len(octets)))
        parts.append(octets)
    return b"".join(parts)


def element_bytes(name: str, index: int, element: object) -> bytes:
    """One BYTES element as bytes (str is taken as UTF-8)."""
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode("utf-8")
    if isinstance(element, bytearray | memoryview):
        return bytes(element)
    raise TensorError(
        name, f"BYTES element {index} is a {type(element).__name__}; expected bytes or str"
    )


def _decode_bytes(name: str, shape: tuple[int, ...], count: int, data: Buffer) -> np.ndarray:
    size = len(data)
    unpack = _LENGTH.unpack_from
    items: list[bytes] = []
    offset = 0
    for index in range(count):
        if offset + 4 > size:
            raise TensorError(
                name,
                f"BYTES raw data ends at element {index}: {size - offset} bytes left at offset "
                f"{offset}, a 4-byte length prefix expected; shape {shape_text(shape)} needs "
                f"{count} elements",
            )
        (length,) = unpack(data, offset)
        offset += 4
        end = offset + length
        if end > size:
            raise TensorError(
                name,
                f"BYTES element {index} declares {length} bytes at offset {offset} but only "
                f"{size - offset} remain",
            )
        items.append(bytes(data[offset:end]))
        offset = end
    if offset != size:
        raise TensorError(
            name,
            f"BYTES raw data has {size - offset} bytes left after the {count} elements "
            f"of shape {shape_text(shape)}; expected none",
        )
    flat = np.empty(count, dtype=np.object_)
    flat[:] = items
    return flat
