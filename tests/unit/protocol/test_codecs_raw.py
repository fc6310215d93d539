"""The raw form's details: zero copy, BOOL bytes, parameters and metadata."""

from __future__ import annotations

import numpy as np
import pytest

from meshserve.errors import InvalidRequestError
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import (
    InferenceRequest,
    ModelMetadata,
    ParameterValue,
    Tensor,
    TensorMetadata,
)


def test_decode_raw_wraps_the_buffer_without_copying() -> None:
    buffer = np.arange(6, dtype="<i4").tobytes()
    array = codecs.decode_raw("t", Datatype.INT32, (2, 3), buffer)
    assert np.shares_memory(array, np.frombuffer(buffer, dtype=np.uint8))
    assert not array.flags.writeable
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_binary_inputs_are_views_of_the_body() -> None:
    values = np.linspace(0, 1, 5, dtype=np.float64)
    body, length = codecs.encode_binary_request(
        InferenceRequest("m", [Tensor("x", Datatype.FP64, values)])
    )
    request = codecs.decode_binary_request(body, json_length=length, model_name="m")
    assert np.shares_memory(request.inputs[0].data, np.frombuffer(body, dtype=np.uint8))
    assert np.array_equal(request.inputs[0].data, values)


def test_raw_bool_reads_any_non_zero_byte_as_true() -> None:
    array = codecs.decode_raw("flags", Datatype.BOOL, (4,), b"\x00\x01\x02\xff")
    assert array.dtype == np.bool_
    assert array.tolist() == [False, True, True, True]
    assert (array == True).tolist() == [False, True, True, True]  # noqa: E712


def test_encode_raw_is_little_endian_and_row_major() -> None:
    big_endian = np.array([[1, 2], [3, 4]], dtype=">u2")
    assert codecs.encode_raw("t", Datatype.UINT16, big_endian.T) == bytes([1, 0, 3, 0, 2, 0, 4, 0])


@pytest.mark.parametrize(
    "value, field",
    [
        (True, "bool_param"),
        (-(2**63), "int64_param"),
        (2**63 - 1, "int64_param"),
        (2**63, "uint64_param"),
        (2**64 - 1, "uint64_param"),
        (0.25, "double_param"),
        ("text", "string_param"),
    ],
)
def test_parameter_values_pick_their_oneof_member(value: ParameterValue, field: str) -> None:
    message = codecs.parameter_to_proto(value)
    assert message.WhichOneof("parameter_choice") == field
    decoded = codecs.parameter_from_proto(message)
    assert decoded == value and type(decoded) is type(value)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1])
def test_parameter_out_of_64_bits_is_refused(value: int) -> None:
    with pytest.raises(InvalidRequestError, match="parameter 'big'"):
        codecs.parameter_to_proto(value, key="big")


def test_parameters_map_round_trips() -> None:
    message = pb.ModelInferRequest()
    params: dict[str, ParameterValue] = {"a": 1, "b": "x", "c": False, "d": 2.5}
    codecs.parameters_to_proto(params, into=message.parameters)
    assert codecs.parameters_from_proto(message.parameters) == params


def test_metadata_round_trips() -> None:
    metadata = ModelMetadata(
        name="iris",
        platform="sklearn",
        versions=("1", "2"),
        inputs=(TensorMetadata("input-0", Datatype.FP32, (-1, 4)),),
        outputs=(
            TensorMetadata("label", Datatype.INT64, (-1,)),
            TensorMetadata("names", Datatype.BYTES, ()),
        ),
    )
    message = codecs.metadata_to_proto(metadata)
    assert list(message.inputs[0].shape) == [-1, 4]
    assert message.outputs[1].datatype == "BYTES"
    parsed = pb.ModelMetadataResponse.FromString(message.SerializeToString())
    assert codecs.metadata_from_proto(parsed) == metadata
