"""ModelInferRequest / ModelInferResponse <-> InferenceRequest / InferenceResponse.

A message carries its tensor data either typed (``contents.<type>_contents``
per tensor) or raw (``raw_input_contents`` / ``raw_output_contents``, one
entry per tensor, in order); the proto makes raw all-or-nothing for a
message. FP16 and BF16 have no typed field, so asking for typed encoding of a
message that holds one of them yields a raw message instead: that is the only
form every v2 peer can read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import numpy as np
from google.protobuf.message import DecodeError

from meshserve.errors import InvalidRequestError, TensorError
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.codecs._checks import (
    INT_RANGES,
    check_array,
    check_unique_names,
    element_count,
    parse_datatype,
    reshape,
    shape_text,
)
from meshserve.protocol.codecs._grpc_params import parameters_from_proto, parameters_to_proto
from meshserve.protocol.codecs._raw import decode_raw, element_bytes, encode_raw
from meshserve.protocol.datatypes import Datatype, numpy_dtype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

__all__ = [
    "parse_message",
    "parse_request",
    "request_from_proto",
    "request_to_proto",
    "response_from_proto",
    "response_to_proto",
]

if TYPE_CHECKING:
    _TensorMessage: TypeAlias = (
        pb.ModelInferRequest.InferInputTensor | pb.ModelInferResponse.InferOutputTensor
    )

_TYPED_FIELD: dict[Datatype, str] = {
    Datatype.BOOL: "bool_contents",
    Datatype.INT8: "int_contents",
    Datatype.INT16: "int_contents",
    Datatype.INT32: "int_contents",
    Datatype.INT64: "int64_contents",
    Datatype.UINT8: "uint_contents",
    Datatype.UINT16: "uint_contents",
    Datatype.UINT32: "uint_contents",
    Datatype.UINT64: "uint64_contents",
    Datatype.FP32: "fp32_contents",
    Datatype.FP64: "fp64_contents",
    Datatype.BYTES: "bytes_contents",
}
# Datatypes that share a wider typed field, with the dtype that field holds.
_NARROW: dict[Datatype, np.dtype[np.generic]] = {
    Datatype.INT8: np.dtype(np.int32),
    Datatype.INT16: np.dtype(np.int32),
    Datatype.UINT8: np.dtype(np.uint32),
    Datatype.UINT16: np.dtype(np.uint32),
}
_RAW_ONLY = frozenset({Datatype.FP16, Datatype.BF16})

_M = TypeVar("_M")


def parse_message(parse: Callable[[bytes], _M], data: bytes) -> _M:
    """``parse(data)`` (a message type's ``FromString``), with a body that is
    not a valid message of that type (truncated, a string field that is not
    UTF-8, nesting past protobuf's limit) reported as InvalidRequestError."""
    try:
        return parse(data)
    except DecodeError as exc:
        raise InvalidRequestError(f"request body is not a valid protobuf message: {exc}") from None


def parse_request(body: bytes) -> pb.ModelInferRequest:
    """The ModelInferRequest serialized in ``body`` (see :func:`parse_message`)."""
    message: pb.ModelInferRequest = parse_message(pb.ModelInferRequest.FromString, body)
    return message


def request_from_proto(message: pb.ModelInferRequest) -> InferenceRequest:
    """The InferenceRequest a ModelInferRequest carries.

    Raises TensorError for a malformed tensor, InvalidRequestError for a
    malformed message (raw entry count, parameters).
    """
    return InferenceRequest(
        model_name=message.model_name,
        model_version=message.model_version,
        id=message.id,
        parameters=parameters_from_proto(message.parameters),
        inputs=_tensors_from_proto(
            message.inputs, message.raw_input_contents, raw_field="raw_input_contents"
        ),
        outputs=[
            RequestedOutput(name=out.name, parameters=parameters_from_proto(out.parameters))
            for out in message.outputs
        ],
    )


def request_to_proto(request: InferenceRequest, *, raw: bool = True) -> pb.ModelInferRequest:
    """A ModelInferRequest for ``request``; raw contents unless ``raw`` is False.

    With ``raw=False`` the message is still raw if any input is FP16 or BF16.
    """
    message = pb.ModelInferRequest(
        model_name=request.model_name, model_version=request.model_version, id=request.id
    )
    parameters_to_proto(request.parameters, into=message.parameters)
    _tensors_to_proto(
        request.inputs,
        add=message.inputs.add,
        add_raw=message.raw_input_contents.append,
        raw=raw,
    )
    for requested in request.outputs:
        out = message.outputs.add(name=requested.name)
        parameters_to_proto(requested.parameters, into=out.parameters)
    return message


def response_from_proto(message: pb.ModelInferResponse) -> InferenceResponse:
    """The InferenceResponse a ModelInferResponse carries."""
    return InferenceResponse(
        model_name=message.model_name,
        model_version=message.model_version,
        id=message.id,
        parameters=parameters_from_proto(message.parameters),
        outputs=_tensors_from_proto(
            message.outputs, message.raw_output_contents, raw_field="raw_output_contents"
        ),
    )


def response_to_proto(response: InferenceResponse, *, raw: bool = True) -> pb.ModelInferResponse:
    """A ModelInferResponse for ``response``; raw contents unless ``raw`` is False.

    With ``raw=False`` the message is still raw if any output is FP16 or BF16.
    """
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id
    )
    parameters_to_proto(response.parameters, into=message.parameters)
    _tensors_to_proto(
        response.outputs,
        add=message.outputs.add,
        add_raw=message.raw_output_contents.append,
        raw=raw,
    )
    return message


def _tensors_from_proto(
    messages: Sequence[_TensorMessage], raw: Sequence[bytes], *, raw_field: str
) -> list[Tensor]:
    if raw and len(raw) != len(messages):
        raise InvalidRequestError(
            f"{raw_field} has {len(raw)} entries but the message has {len(messages)} "
            "tensors; expected one entry per tensor, in tensor order"
        )
    tensors: list[Tensor] = []
    for index, message in enumerate(messages):
        name = message.name
        datatype = parse_datatype(name, message.datatype)
        shape = tuple(message.shape)
        has_typed = message.HasField("contents") and bool(message.contents.ListFields())
        if raw:
            if has_typed:
                raise TensorError(
                    name,
                    f"has typed contents while the message also carries {raw_field}; "
                    "a message holds all its tensors raw or all typed",
                )
            array = decode_raw(name, datatype, shape, raw[index])
        else:
            array = _typed_array(name, datatype, shape, message.contents, raw_field=raw_field)
        tensors.append(Tensor(name, datatype, array, parameters_from_proto(message.parameters)))
    check_unique_names(tensors)
    return tensors


def _typed_array(
    name: str,
    datatype: Datatype,
    shape: tuple[int, ...],
    contents: pb.InferTensorContents,
    *,
    raw_field: str,
) -> np.ndarray:
    count = element_count(name, shape)
    present = [field.name for field, _ in contents.ListFields()]
    expected = _TYPED_FIELD.get(datatype)
    if expected is None:
        if present or count:
            raise TensorError(
                name, f"{datatype} has no typed contents field; send it in {raw_field}"
            )
        return reshape(name, np.empty(0, dtype=numpy_dtype(datatype)), shape)
    wrong = [field for field in present if field != expected]
    if wrong:
        raise TensorError(name, f"{datatype} data is in {', '.join(wrong)}; expected {expected}")
    values = getattr(contents, expected)
    if len(values) != count:
        raise TensorError(
            name,
            f"{expected} has {len(values)} values; shape {shape_text(shape)} needs {count}",
        )
    if datatype is Datatype.BYTES:
        flat = np.empty(count, dtype=np.object_)
        flat[:] = list(values)
    elif datatype in _NARROW:
        flat = _narrowed(name, datatype, np.array(values, dtype=_NARROW[datatype]))
    else:
        flat = np.array(values, dtype=numpy_dtype(datatype))
    return reshape(name, flat, shape)


def _narrowed(name: str, datatype: Datatype, wide: np.ndarray) -> np.ndarray:
    low, high = INT_RANGES[datatype]
    if wide.size and (int(wide.min()) < low or int(wide.max()) > high):
        bad = next(v for v in wide.tolist() if not low <= v <= high)
        raise TensorError(name, f"value {bad} is out of range for {datatype} [{low}, {high}]")
    return wide.astype(numpy_dtype(datatype))


def _tensors_to_proto(
    tensors: Sequence[Tensor],
    *,
    add: Callable[[], _TensorMessage],
    add_raw: Callable[[bytes], None],
    raw: bool,
) -> None:
    datatypes = [parse_datatype(t.name, t.datatype) for t in tensors]
    use_raw = raw or any(d in _RAW_ONLY for d in datatypes)
    for tensor, datatype in zip(tensors, datatypes, strict=True):
        message = add()
        message.name = tensor.name
        message.datatype = datatype.value
        message.shape.extend(tensor.shape)
        parameters_to_proto(tensor.parameters, into=message.parameters)
        if use_raw:
            add_raw(encode_raw(tensor.name, datatype, tensor.data))
        else:
            _fill_typed(message.contents, tensor.name, datatype, tensor.data)


def _fill_typed(
    contents: pb.InferTensorContents, name: str, datatype: Datatype, array: np.ndarray
) -> None:
    check_array(name, datatype, array)
    values = array.ravel().tolist()
    if datatype is Datatype.BYTES:
        values = [element_bytes(name, i, v) for i, v in enumerate(values)]
    getattr(contents, _TYPED_FIELD[datatype]).extend(values)
