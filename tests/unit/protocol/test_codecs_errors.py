"""Malformed tensors and messages are refused with errors that name the tensor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from meshserve.errors import InvalidRequestError, TensorError
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, Tensor

NAME = "the_input"


def _proto(
    datatype: str = "INT32",
    shape: tuple[int, ...] = (2, 2),
    *,
    raw: list[bytes] | None = None,
    **contents: list[Any],
) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name=NAME, datatype=datatype, shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    message.raw_input_contents.extend(raw or [])
    return message


def _prefixed(*elements: bytes) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


GRPC_CASES: dict[str, tuple[pb.ModelInferRequest, str]] = {
    "unknown datatype": (_proto("FP8", int_contents=[1, 2, 3, 4]), "unknown datatype 'FP8'"),
    "negative dimension": (_proto(shape=(-1, 2), int_contents=[1, 2]), "negative dimension -1"),
    "typed count != shape": (_proto(int_contents=[1, 2, 3]), "has 3 values; shape [2, 2] needs 4"),
    "raw length != count*itemsize": (
        _proto(raw=[b"\0" * 12]),
        "raw data is 12 bytes; shape [2, 2] of INT32 needs 16",
    ),
    "BYTES truncated prefix": (
        _proto("BYTES", (2,), raw=[_prefixed(b"ab") + b"\x01\x00"]),
        "a 4-byte length prefix expected",
    ),
    "BYTES truncated element": (
        _proto("BYTES", (1,), raw=[b"\x05\x00\x00\x00ab"]),
        "BYTES element 0 declares 5 bytes at offset 4 but only 2 remain",
    ),
    "BYTES trailing bytes": (
        _proto("BYTES", (1,), raw=[_prefixed(b"ab") + b"xyz"]),
        "3 bytes left after the 1 elements",
    ),
    "typed and raw": (
        _proto(raw=[b"\0" * 16], int_contents=[1, 2, 3, 4]),
        "has typed contents while the message also carries raw_input_contents",
    ),
    "wrong typed field": (
        _proto(fp32_contents=[1.0, 2.0, 3.0, 4.0]),
        "INT32 data is in fp32_contents; expected int_contents",
    ),
    "typed FP16": (
        _proto("FP16", (1,), fp32_contents=[1.0]),
        "FP16 has no typed contents field; send it in raw_input_contents",
    ),
    "INT8 out of range": (
        _proto("INT8", (2,), int_contents=[1, 300]),
        "value 300 is out of range for INT8",
    ),
}


@pytest.mark.parametrize("message, problem", GRPC_CASES.values(), ids=GRPC_CASES.keys())
def test_malformed_grpc_tensor(message: pb.ModelInferRequest, problem: str) -> None:
    with pytest.raises(TensorError) as caught:
        codecs.request_from_proto(message)
    assert caught.value.tensor == NAME
    assert NAME in str(caught.value)
    assert problem in str(caught.value)


def test_raw_entry_count_must_match_inputs() -> None:
    message = _proto(raw=[b"\0" * 16, b"\0" * 16])
    with pytest.raises(
        InvalidRequestError, match="raw_input_contents has 2 entries but the message has 1 tensors"
    ):
        codecs.request_from_proto(message)


def test_raw_output_entry_count_must_match_outputs() -> None:
    message = pb.ModelInferResponse(model_name="m")
    message.outputs.add(name="o", datatype="INT8", shape=[1])
    message.raw_output_contents.extend([b"\1", b"\2"])
    with pytest.raises(InvalidRequestError, match="raw_output_contents has 2 entries"):
        codecs.response_from_proto(message)


def test_duplicate_input_names() -> None:
    message = _proto(raw=[b"\0" * 16, b"\0" * 16])
    message.inputs.add(name=NAME, datatype="INT32", shape=[2, 2])
    with pytest.raises(TensorError, match=f"'{NAME}': appears more than once"):
        codecs.request_from_proto(message)


def test_parameter_without_value() -> None:
    message = _proto(int_contents=[1, 2, 3, 4])
    message.parameters["empty"].CopyFrom(pb.InferParameter())
    with pytest.raises(InvalidRequestError, match="parameter 'empty' has no value"):
        codecs.request_from_proto(message)


def test_metadata_with_unknown_datatype() -> None:
    message = pb.ModelMetadataResponse(name="m")
    message.inputs.add(name=NAME, datatype="COMPLEX64", shape=[-1, 3])
    with pytest.raises(TensorError, match=f"'{NAME}': unknown datatype 'COMPLEX64'"):
        codecs.metadata_from_proto(message)


def _json_input(**fields: Any) -> dict[str, Any]:
    tensor = {"name": NAME, "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}
    tensor.update(fields)
    return {"inputs": [{k: v for k, v in tensor.items() if v is not None}]}


JSON_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "unknown datatype": (_json_input(datatype="INT3"), "unknown datatype 'INT3'"),
    "negative dimension": (_json_input(shape=[-2, 2]), "negative dimension -2"),
    "shape not integers": (_json_input(shape=[2, "2"]), "expected a JSON array of non-negative"),
    "flat count != shape": (_json_input(data=[1, 2, 3]), "data holds 3 elements; shape [2, 2]"),
    "nested does not match": (
        _json_input(data=[[1, 2, 3, 4]]),
        "data holds 4 elements nested as [1, 4]; shape [2, 2] needs 4",
    ),
    "ragged": (_json_input(data=[[1, 2], [3]]), "data is ragged"),
    "not an array": (_json_input(data={"a": 1}), "data is a object; expected a JSON array"),
    "missing data": (_json_input(data=None), "has no 'data' member"),
    "string in INT32": (_json_input(data=[1, 2, "3", 4]), "element 2 is '3'; INT32 data must be"),
    "float in INT32": (_json_input(data=[1, 2, 3.5, 4]), "element 2 is 3.5; INT32 data must be"),
    "INT32 out of range": (
        _json_input(data=[1, 2, 3, 2**31]),
        "element 3 is 2147483648, out of range for INT32",
    ),
    "UINT8 negative": (
        _json_input(datatype="UINT8", data=[1, -1, 3, 4]),
        "element 1 is -1, out of range for UINT8",
    ),
    "number in BOOL": (
        _json_input(datatype="BOOL", data=[True, 1, False, True]),
        "BOOL data must be true or false",
    ),
    "number in BYTES": (
        _json_input(datatype="BYTES", data=["a", 1, "b", "c"]),
        "element 1 is 1; BYTES data must be JSON strings",
    ),
    "string in FP32": (
        _json_input(datatype="FP32", data=[1.0, "x", 2.0, 3.0]),
        "element 1 is 'x'; FP32 data must be numbers",
    ),
    "bad tensor parameters": (_json_input(parameters={"p": [1]}), "parameter 'p' is [1]"),
}


@pytest.mark.parametrize("body, problem", JSON_CASES.values(), ids=JSON_CASES.keys())
def test_malformed_json_tensor(body: dict[str, Any], problem: str) -> None:
    with pytest.raises(TensorError) as caught:
        codecs.request_from_json(orjson.dumps(body), model_name="m")
    assert caught.value.tensor == NAME
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "body, problem",
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body is a JSON list; expected an object"),
        (b"{}", "request 'inputs' is missing; expected a JSON array"),
        (b'{"inputs": [5]}', "input 0 is a JSON int; expected an object"),
        (b'{"inputs": [], "id": 5}', "request 'id' is 5; expected a string"),
        (b'{"inputs": [], "parameters": {"p": null}}', "parameter 'p' is None"),
    ],
)
def test_malformed_json_message(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        codecs.request_from_json(body, model_name="m")
    assert not isinstance(caught.value, TensorError)
    assert problem in str(caught.value)


def _binary_body(parameters: dict[str, Any], tail: bytes, **fields: Any) -> tuple[bytes, int]:
    tensor = {"name": NAME, "datatype": "INT32", "shape": [2], "parameters": parameters}
    tensor.update(fields)
    header = orjson.dumps({"inputs": [tensor]})
    return header + tail, len(header)


BINARY_CASES: dict[str, tuple[tuple[bytes, int], str]] = {
    "size past the end": (
        _binary_body({"binary_data_size": 8}, b"\0" * 5),
        "binary_data_size is 8 but only 5 bytes of binary data remain",
    ),
    "size does not match shape": (
        _binary_body({"binary_data_size": 4}, b"\0" * 4),
        "raw data is 4 bytes; shape [2] of INT32 needs 8",
    ),
    "size not an integer": (
        _binary_body({"binary_data_size": "8"}, b"\0" * 8),
        "binary_data_size is '8'; expected an integer >= 0",
    ),
    "data and binary": (
        _binary_body({"binary_data_size": 8}, b"\0" * 8, data=[1, 2]),
        "has both 'data' and binary_data_size",
    ),
    "BYTES truncated": (
        _binary_body({"binary_data_size": 6}, b"\x09\0\0\0ab", datatype="BYTES", shape=[1]),
        "BYTES element 0 declares 9 bytes",
    ),
}


@pytest.mark.parametrize("body, problem", BINARY_CASES.values(), ids=BINARY_CASES.keys())
def test_malformed_binary_tensor(body: tuple[bytes, int], problem: str) -> None:
    data, length = body
    with pytest.raises(TensorError) as caught:
        codecs.decode_binary_request(data, json_length=length, model_name="m")
    assert caught.value.tensor == NAME
    assert problem in str(caught.value)


def test_binary_size_without_header_length() -> None:
    body, _ = _binary_body({"binary_data_size": 8}, b"")
    with pytest.raises(TensorError, match="no Inference-Header-Content-Length was given"):
        codecs.decode_binary_request(body, json_length=None, model_name="m")


def test_binary_bytes_nobody_claims() -> None:
    body, length = _binary_body({"binary_data_size": 8}, b"\0" * 10)
    with pytest.raises(InvalidRequestError, match="2 bytes of binary data follow the JSON"):
        codecs.decode_binary_request(body, json_length=length, model_name="m")


@pytest.mark.parametrize("length", [0, -1, 10_000])
def test_binary_header_length_out_of_body(length: int) -> None:
    body, _ = _binary_body({"binary_data_size": 8}, b"\0" * 8)
    with pytest.raises(InvalidRequestError, match=f"Inference-Header-Content-Length is {length}"):
        codecs.decode_binary_request(body, json_length=length, model_name="m")


ENCODERS: dict[str, Callable[[Tensor], object]] = {
    "grpc raw": lambda t: codecs.response_to_proto(InferenceResponse("m", [t]), raw=True),
    "grpc typed": lambda t: codecs.response_to_proto(InferenceResponse("m", [t]), raw=False),
    "json": lambda t: codecs.response_to_json(InferenceResponse("m", [t])),
    "json bytes": lambda t: codecs.response_to_json_bytes(InferenceResponse("m", [t])),
    "binary": lambda t: codecs.encode_binary_request(InferenceRequest("m", [t])),
}


@pytest.mark.parametrize("encode", ENCODERS.values(), ids=ENCODERS.keys())
def test_encoders_refuse_a_dtype_that_does_not_hold_the_datatype(
    encode: Callable[[Tensor], object],
) -> None:
    tensor = Tensor(NAME, Datatype.FP32, np.zeros(3, dtype=np.float64))
    with pytest.raises(
        TensorError, match=f"'{NAME}': datatype is FP32 but the data has numpy dtype float64"
    ):
        encode(tensor)


@pytest.mark.parametrize("encode", ENCODERS.values(), ids=ENCODERS.keys())
def test_encoders_refuse_a_non_bytes_element(encode: Callable[[Tensor], object]) -> None:
    tensor = Tensor(NAME, Datatype.BYTES, np.array([b"a", 3], dtype=np.object_))
    with pytest.raises(TensorError, match=f"'{NAME}': BYTES element 1 is a int"):
        encode(tensor)


def test_json_refuses_bytes_that_are_not_utf8() -> None:
    response = InferenceResponse("m", [Tensor(NAME, Datatype.BYTES, np.array([b"\xff\xfe"]))])
    with pytest.raises(TensorError, match=f"'{NAME}': BYTES element 0 is not valid UTF-8"):
        codecs.response_to_json(response)
    # ...but binary data carries them.
    request = InferenceRequest("m", [], parameters={"binary_data_output": True})
    body, length = codecs.encode_binary_response(response, request=request)
    decoded = codecs.decode_binary_response(body, json_length=length)
    assert decoded.outputs[0].data.tolist() == [b"\xff\xfe"]
