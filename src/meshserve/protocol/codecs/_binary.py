"""Triton's binary tensor data extension for REST bodies.

A body is a JSON object (its length in the ``Inference-Header-Content-Length``
header) followed by the raw data of the tensors whose ``parameters`` give
``binary_data_size``, in tensor order. A requested output comes back binary
when its parameters say ``binary_data: true``, or the request parameters say
``binary_data_output: true`` and the output does not say otherwise.

``binary_data_size`` is framing, so it never reaches decoded tensors.
``binary_data`` and ``binary_data_output`` stay in the decoded request: they
are how ``encode_binary_response`` learns what the caller asked for.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import orjson

from meshserve.errors import InvalidRequestError, TensorError, quote_client_value
from meshserve.protocol.codecs import _rest
from meshserve.protocol.codecs._checks import parse_datatype
from meshserve.protocol.codecs._raw import decode_raw, encode_raw
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, Tensor

__all__ = [
    "INFERENCE_HEADER_CONTENT_LENGTH",
    "decode_binary_request",
    "decode_binary_response",
    "encode_binary_request",
    "encode_binary_response",
]

INFERENCE_HEADER_CONTENT_LENGTH = "Inference-Header-Content-Length"
"""The HTTP header that gives the length of the JSON part of a binary body."""

_SIZE = "binary_data_size"
_BINARY = "binary_data"
_BINARY_OUTPUT = "binary_data_output"


def decode_binary_request(
    body: bytes | bytearray | memoryview,
    *,
    json_length: int | None,
    model_name: str,
    model_version: str = "",
) -> InferenceRequest:
    """The InferenceRequest in a REST body that may carry binary tensor data.

    ``json_length`` is the Inference-Header-Content-Length header (None when
    absent: the whole body is JSON). Inputs are zero-copy views of ``body``.
    Raises TensorError for a malformed tensor or a binary_data_size that
    runs past the body, InvalidRequestError for a bad header length or
    binary bytes no input claims.
    """
    header, tail = _split(body, json_length, what="request")
    request = _rest.request_from_obj(
        _rest.load_json(header, what="request"),
        model_name=model_name,
        model_version=model_version,
        tensor=tail.tensor,
    )
    tail.finish()
    return request


def decode_binary_response(
    body: bytes | bytearray | memoryview, *, json_length: int | None
) -> InferenceResponse:
    """The InferenceResponse in a REST body that may carry binary tensor data."""
    header, tail = _split(body, json_length, what="response")
    response = _rest.response_from_obj(_rest.load_json(header, what="response"), tensor=tail.tensor)
    tail.finish()
    return response


def encode_binary_response(
    response: InferenceResponse, *, request: InferenceRequest
) -> tuple[bytes, int | None]:
    """The REST body for ``response``, and the JSON length for the
    Inference-Header-Content-Length header (None when no output is binary).

    Which outputs are binary follows ``request`` (see the module docstring).
    """
    default = request.parameters.get(_BINARY_OUTPUT) is True
    asked = {out.name: out.parameters.get(_BINARY) for out in request.outputs}
    binary = [
        (flag if isinstance(flag := asked.get(t.name), bool) else default) for t in response.outputs
    ]
    outputs, chunks = _encode_tensors(response.outputs, binary, numpy_ok=True)
    return _assemble(_rest.response_json(response, outputs), chunks, any(binary))


def encode_binary_request(
    request: InferenceRequest, *, binary_inputs: bool | Collection[str] = True
) -> tuple[bytes, int | None]:
    """The REST body for ``request`` (client side), and its JSON length.

    ``binary_inputs`` is True (every input binary), False (all JSON) or the
    names of the inputs to send binary. Requested outputs keep their
    parameters, so ``binary_data`` there asks for binary outputs.
    """
    binary = [
        binary_inputs if isinstance(binary_inputs, bool) else t.name in binary_inputs
        for t in request.inputs
    ]
    inputs, chunks = _encode_tensors(request.inputs, binary, numpy_ok=False)
    return _assemble(_rest.request_json(request, inputs), chunks, any(binary))


def _encode_tensors(
    tensors: list[Tensor], binary: list[bool], *, numpy_ok: bool
) -> tuple[list[dict[str, Any]], list[bytes]]:
    objects: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor, is_binary in zip(tensors, binary, strict=True):
        parameters = {k: v for k, v in tensor.parameters.items() if k != _SIZE}
        if is_binary:
            datatype = parse_datatype(tensor.name, tensor.datatype)
            raw = encode_raw(tensor.name, datatype, tensor.data)
            chunks.append(raw)
            objects.append(_rest.tensor_header_json(tensor, {**parameters, _SIZE: len(raw)}))
        else:
            plain = Tensor(tensor.name, tensor.datatype, tensor.data, parameters)
            objects.append(_rest.tensor_json(plain, numpy_ok=numpy_ok))
    return objects, chunks


def _assemble(
    obj: dict[str, Any], chunks: list[bytes], has_binary: bool
) -> tuple[bytes, int | None]:
    header = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    if not has_binary:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _split(
    body: bytes | bytearray | memoryview, json_length: int | None, *, what: str
) -> tuple[memoryview, _Tail]:
    view = memoryview(body)
    if json_length is None:
        return view, _Tail(view[len(view) :], has_header=False)
    if not 0 < json_length <= len(view):
        raise InvalidRequestError(
            f"{INFERENCE_HEADER_CONTENT_LENGTH} is {json_length} but the {what} body is "
            f"{len(view)} bytes; expected a length between 1 and the body length"
        )
    return view[:json_length], _Tail(view[json_length:], has_header=True)


class _Tail:
    """The binary part of a body, handed out to tensors in order."""

    def __init__(self, data: memoryview, *, has_header: bool) -> None:
        self._data = data
        self._offset = 0
        self._has_header = has_header

    def tensor(self, header: _rest.TensorHeader) -> Tensor:
        size = header.parameters.get(_SIZE)
        if size is None:
            return _rest.tensor_from_json(header)
        name = header.name
        if type(size) is not int or size < 0:
            raise TensorError(
                name, f"binary_data_size is {quote_client_value(size)}; expected an integer >= 0"
            )
        if header.data is not _rest.MISSING:
            raise TensorError(
                name, "has both 'data' and binary_data_size; expected one or the other"
            )
        end = self._offset + size
        if end > len(self._data):
            left = len(self._data) - self._offset
            why = (
                ""
                if self._has_header
                else (f" (no {INFERENCE_HEADER_CONTENT_LENGTH} was given, so the body is all JSON)")
            )
            raise TensorError(
                name,
                f"binary_data_size is {size} but only {left} bytes of binary data remain{why}",
            )
        chunk = self._data[self._offset : end]
        self._offset = end
        array = decode_raw(name, header.datatype, header.shape, chunk)
        parameters = {k: v for k, v in header.parameters.items() if k != _SIZE}
        return Tensor(name, header.datatype, array, parameters)

    def finish(self) -> None:
        left = len(self._data) - self._offset
        if left:
            raise InvalidRequestError(
                f"{left} bytes of binary data follow the JSON but no tensor's "
                "binary_data_size claims them"
            )
