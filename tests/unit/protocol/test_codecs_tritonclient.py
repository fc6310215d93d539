"""Cross-checks against the real client library, tritonclient.

tritonclient builds the bodies and messages Triton-compatible clients send;
what it builds must decode to its numpy input, and what meshserve encodes
must come back from tritonclient's own decoders unchanged.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.grpc import _utils as triton_grpc_utils
from tritonclient.grpc import service_pb2 as triton_pb
from tritonclient.http import _utils as triton_http_utils
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype, numpy_dtype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)
from tests.unit.protocol.test_codecs_support import assert_array_equal

_RNG = np.random.default_rng(7)
_UTF8 = ["", "a", "héllo", "日本", "x" * 300, "tab\tnew\nline"]


def sample(datatype: Datatype, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """A fixed array of ``datatype`` with edge values (extremes, NaN, inf)."""
    count = int(np.prod(shape))
    if datatype is Datatype.BYTES:
        return np.array([_UTF8[i % len(_UTF8)].encode() for i in range(count)], np.object_).reshape(
            shape
        )
    if datatype is Datatype.BOOL:
        flags: np.ndarray = np.arange(count) % 3 == 0
        return flags.reshape(shape)
    if datatype in (Datatype.FP16, Datatype.FP32, Datatype.FP64, Datatype.BF16):
        values = _RNG.standard_normal(count) * 100
        values[: min(count, 3)] = [np.nan, np.inf, -np.inf][: min(count, 3)]
        return values.astype(_numpy(datatype)).reshape(shape)
    info = np.iinfo(_numpy(datatype))
    values = _RNG.integers(info.min, info.max, size=count, dtype=_numpy(datatype), endpoint=True)
    values[:2] = [info.min, info.max][: min(count, 2)]
    return values.reshape(shape)


def _numpy(datatype: Datatype) -> Any:
    return numpy_dtype(datatype)


ALL = pytest.mark.parametrize("datatype", list(Datatype), ids=str)
# tritonclient.http refuses to send BF16 as JSON and cannot read BF16 "NaN" strings
# back (ml_dtypes parses no strings); every other datatype goes either way.
HTTP_CASES = pytest.mark.parametrize(
    "datatype, binary",
    [(d, b) for d in Datatype for b in (True, False) if b or d is not Datatype.BF16],
    ids=lambda v: str(v) if isinstance(v, Datatype) else ("binary" if v else "json"),
)
SHAPES = pytest.mark.parametrize("shape", [(2, 3), (0, 4), ()], ids=str)


@ALL
@SHAPES
def test_tritonclient_grpc_request_decodes(datatype: Datatype, shape: tuple[int, ...]) -> None:
    array = sample(datatype, shape)
    first = triton_grpc.InferInput("first", list(shape), datatype.value)
    first.set_data_from_numpy(array)
    second = triton_grpc.InferInput("second", [2], "INT64")
    second.set_data_from_numpy(np.array([7, -7], dtype=np.int64))
    message = triton_grpc_utils._get_inference_request(
        model_name="m",
        inputs=[first, second],
        model_version="3",
        request_id="req-1",
        outputs=[triton_grpc.InferRequestedOutput("out")],
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        parameters={"custom": "yes", "n": 5},
    )
    ours = pb.ModelInferRequest.FromString(message.SerializeToString())
    request = codecs.request_from_proto(ours)
    assert (request.model_name, request.model_version, request.id) == ("m", "3", "req-1")
    assert request.parameters == {"custom": "yes", "n": 5}
    assert request.outputs == [RequestedOutput("out")]
    assert [t.datatype for t in request.inputs] == [datatype, Datatype.INT64]
    assert_array_equal(array, request.inputs[0].data, datatype)
    assert request.inputs[1].data.tolist() == [7, -7]


@ALL
@SHAPES
def test_grpc_response_reads_in_tritonclient(datatype: Datatype, shape: tuple[int, ...]) -> None:
    array = sample(datatype, shape)
    response = InferenceResponse("m", [Tensor("out", datatype, array)], id="r")
    message = codecs.response_to_proto(response, raw=True)
    theirs = triton_pb.ModelInferResponse.FromString(message.SerializeToString())
    result = triton_grpc.InferResult(theirs)
    assert_array_equal(array, result.as_numpy("out"), datatype)


@pytest.mark.parametrize(
    "datatype", [d for d in Datatype if d not in (Datatype.FP16, Datatype.BF16)], ids=str
)
def test_grpc_typed_message_parses_in_tritonclient(datatype: Datatype) -> None:
    array = sample(datatype)
    message = codecs.response_to_proto(
        InferenceResponse("m", [Tensor("o", datatype, array)]), raw=False
    )
    theirs = triton_pb.ModelInferResponse.FromString(message.SerializeToString())
    assert not theirs.raw_output_contents
    field = theirs.outputs[0].contents.ListFields()[0]
    assert len(field[1]) == array.size


@pytest.mark.parametrize(
    "array",
    [
        np.array([b"", b"\x00\xff", b"text", b"x" * 70_000], dtype=np.object_),
        np.array([[b"a", b"bc"], [b"", b"def"]], dtype=np.object_),
        np.array([b"ab", b"c"], dtype=np.bytes_),
    ],
    ids=["mixed", "2d", "bytes_"],
)
def test_bytes_raw_matches_serialize_byte_tensor(array: np.ndarray) -> None:
    ours = codecs.encode_raw("t", Datatype.BYTES, array)
    assert ours == serialize_byte_tensor(array).item()
    assert deserialize_bytes_tensor(ours).tolist() == array.ravel().tolist()
    assert codecs.decode_raw("t", Datatype.BYTES, array.shape, ours).tolist() == array.tolist()


def _http_body(
    inputs: list[triton_http.InferInput], outputs: list[triton_http.InferRequestedOutput]
) -> tuple[bytes, int | None]:
    body: bytes
    body, json_size = triton_http_utils._get_inference_request(
        inputs=inputs,
        request_id="req-9",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters={"flag": True},
    )
    return body, json_size


@HTTP_CASES
@SHAPES
def test_tritonclient_http_request_decodes(
    datatype: Datatype, binary: bool, shape: tuple[int, ...]
) -> None:
    array = sample(datatype, shape)
    first = triton_http.InferInput("first", list(shape), datatype.value)
    first.set_data_from_numpy(array, binary_data=binary)
    second = triton_http.InferInput("second", [3], "FP32")
    second.set_data_from_numpy(np.array([1.5, np.nan, -2], dtype=np.float32), binary_data=binary)
    body, json_size = _http_body(
        [first, second], [triton_http.InferRequestedOutput("out", binary_data=binary)]
    )
    assert (json_size is not None) == binary
    request = codecs.decode_binary_request(body, json_length=json_size, model_name="m")
    assert request.id == "req-9"
    assert request.parameters == {"flag": True}
    assert request.outputs == [RequestedOutput("out", {"binary_data": binary})]
    assert [t.parameters for t in request.inputs] == [{}, {}]  # binary_data_size is gone
    assert_array_equal(array, request.inputs[0].data, datatype)
    assert_array_equal(
        np.array([1.5, np.nan, -2], dtype=np.float32), request.inputs[1].data, Datatype.FP32
    )


@HTTP_CASES
@SHAPES
def test_binary_response_reads_in_tritonclient(
    datatype: Datatype, binary: bool, shape: tuple[int, ...]
) -> None:
    array = sample(datatype, shape)
    other = np.arange(4, dtype=np.int16)
    request = InferenceRequest(
        "m", [], outputs=[RequestedOutput("out", {"binary_data": binary}), RequestedOutput("b")]
    )
    response = InferenceResponse(
        "m", [Tensor("out", datatype, array), Tensor("other", Datatype.INT16, other)]
    )
    body, header_length = codecs.encode_binary_response(response, request=request)
    assert (header_length is not None) == binary
    result = triton_http.InferResult.from_response_body(body, header_length=header_length)
    got = result.as_numpy("out")
    if datatype is Datatype.BYTES and not binary:
        got = np.array([s.encode() for s in got.ravel().tolist()], np.object_).reshape(got.shape)
    assert_array_equal(array, got, datatype)
    assert result.as_numpy("other").tolist() == other.tolist()


def test_binary_data_output_makes_every_output_binary_in_tritonclient() -> None:
    request = InferenceRequest("m", [], parameters={"binary_data_output": True})
    fp16 = np.array([0.5, -1.25], dtype=np.float16)
    bf16 = np.array([[1.0, 3.5]], dtype=ml_dtypes.bfloat16)
    response = InferenceResponse(
        "m", [Tensor("h", Datatype.FP16, fp16), Tensor("b", Datatype.BF16, bf16)]
    )
    body, header_length = codecs.encode_binary_response(response, request=request)
    assert header_length is not None
    result = triton_http.InferResult.from_response_body(body, header_length=header_length)
    for output in result.get_response()["outputs"]:
        assert "binary_data_size" in output["parameters"]
    assert_array_equal(fp16, result.as_numpy("h"), Datatype.FP16)
    assert_array_equal(bf16, result.as_numpy("b"), Datatype.BF16)
