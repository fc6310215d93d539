"""How a model id reaches a runtime that did not choose it: in the
``mm-model-id`` header of every call, and, when the runtime asks for it in
runtimeStatus's ``methodInfos``, injected into the serialized request body
(ModelMesh's ``idInjectionPath``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from meshserve.runtime._server import MODEL_ID_HEADER

__all__ = ["id_injector", "id_metadata"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def id_injector(path: Sequence[int], message: Any) -> Callable[[str], bytes] | None:
    """What to append to a serialized message of type ``message`` (a
    protobuf Descriptor; protobuf ships no type stubs) so that the string
    field at ``path`` (field numbers, outermost first) reads as the model id.
    None when the path does not lead through singular message fields to a
    singular string field.

    Appending works without decoding the body: a parser keeps the last value
    of a singular string field and merges repeated occurrences of a singular
    message field.
    """
    if not path:
        return None
    current = message
    for depth, number in enumerate(path):
        field = current.fields_by_number.get(number) if current is not None else None
        if field is None or field.is_repeated:
            return None
        wanted = field.TYPE_STRING if depth == len(path) - 1 else field.TYPE_MESSAGE
        if field.type != wanted:
            return None
        current = field.message_type
    numbers = tuple(path)

    def inject(model_id: str) -> bytes:
        encoded = _length_delimited(numbers[-1], model_id.encode())
        for number in reversed(numbers[:-1]):
            encoded = _length_delimited(number, encoded)
        return encoded

    return inject


def id_metadata(model_id: str) -> tuple[tuple[str, str | bytes], ...]:
    # Plain header values must be printable ASCII; the -bin form carries
    # any UTF-8 (ModelMesh reads both).
    if model_id.isascii() and model_id.isprintable():
        return ((MODEL_ID_HEADER, model_id),)
    return ((f"{MODEL_ID_HEADER}-bin", model_id.encode()),)
