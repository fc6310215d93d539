"""Each input fuzzing found to give a 5xx, INTERNAL or UNKNOWN, refused as the
caller's error instead (InvalidRequestError: 400 / INVALID_ARGUMENT), with a
message that can be serialised and is bounded in size."""

from __future__ import annotations

import json
import logging

import grpc
import numpy as np
import orjson
import pytest

from meshserve import errors
from meshserve._clock import ManualClock
from meshserve._log_limit import LimitedLog
from meshserve.protocol import codecs, routing, status
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.server._rest_errors import error_response


def _body(data: object, *, datatype: str = "FP32", shape: list[int] | None = None) -> bytes:
    tensor = {"name": "x", "datatype": datatype, "shape": shape or [1], "data": data}
    return json.dumps({"inputs": [tensor]}).encode()


def _refused(body: bytes, match: str) -> errors.InvalidRequestError:
    with pytest.raises(errors.InvalidRequestError, match=match) as info:
        codecs.request_from_json(body, model_name="m")
    # The message travels: encodable, and a 400 body orjson can write.
    message = status.wire_message(info.value)
    message.encode("utf-8")
    assert status.http_status(info.value) == 400
    return info.value


def _nested(levels: int, leaf: str = "1") -> str:
    return "[" * levels + leaf + "]" * levels


@pytest.mark.parametrize("datatype", ["FP32", "INT32", "BOOL", "BYTES"])
def test_data_nested_deeper_than_the_shape_is_refused(datatype: str) -> None:
    # 33+ levels made numpy raise RuntimeError for BYTES (object arrays).
    leaf = {"BOOL": "true", "BYTES": '"a"'}.get(datatype, "1")
    tensor = f'{{"name":"x","datatype":"{datatype}","shape":[1],"data":{_nested(40, leaf)}}}'
    _refused(f'{{"inputs":[{tensor}]}}'.encode(), "data nests deeper than shape")


@pytest.mark.parametrize(
    "body",
    [
        # orjson stops at 1024 levels; the json fallback used to recurse until RecursionError.
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":' + _nested(1100) + "}]}",
        '{"parameters":{"a":' + _nested(5000) + '},"inputs":[]}',
        '{"inputs":' + _nested(100_000) + "}",
    ],
    ids=["data", "parameters", "inputs"],
)
def test_json_nested_past_a_thousand_levels_is_refused(body: str) -> None:
    _refused(body.encode(), "nests too deeply")


@pytest.mark.parametrize(
    "body",
    [
        rb'{"inputs":[{"name":"x","datatype":"BYTES","shape":[1],"data":["\ud800"]}]}',
        rb'{"inputs":[{"name":"\udfff","datatype":"FP32","shape":[1],"data":[1]}]}',
        rb'{"inputs":[{"name":"\ud800","datatype":"FOO","shape":[1],"data":[1]}]}',
        rb'{"id":"\udc00","inputs":[]}',
        rb'{"inputs":[],"outputs":[{"name":"\ud800"}]}',
        b'{"inputs":[{"name":"\xff","datatype":"FP32","shape":[1],"data":[1]}]}',
    ],
    ids=["bytes-data", "name", "name-and-bad-datatype", "id", "output", "not-utf8"],
)
def test_lone_surrogates_and_non_utf8_are_refused(body: bytes) -> None:
    _refused(body, "not valid UTF-8")


def test_a_lone_surrogate_in_a_bytes_element_is_a_tensor_error() -> None:
    # A dict body (already parsed) skips the JSON layer's check.
    body = {"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}]}
    with pytest.raises(errors.TensorError, match="lone surrogate"):
        codecs.request_from_json(body, model_name="m")


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64", "BF16"])
def test_nan_and_infinities_are_read_for_float_datatypes(datatype: str) -> None:
    # JSON has no NaN: the bare tokens (Python's json), the strings and null.
    body = (
        f'{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":[5],'
        '"data":[NaN, Infinity, "-Infinity", null, 1.5]}]}'
    )
    data = codecs.request_from_json(body.encode(), model_name="m").inputs[0].data
    values = data.astype(np.float64)
    assert np.isnan(values[0]) and np.isnan(values[3])
    assert values[1] == np.inf and values[2] == -np.inf and values[4] == 1.5


@pytest.mark.parametrize("datatype", ["INT32", "UINT8", "BOOL", "BYTES"])
def test_nan_and_infinities_are_refused_for_other_datatypes(datatype: str) -> None:
    # (For BYTES, "NaN" is just text.)
    strings = ['"NaN"'] if datatype != "BYTES" else []
    for token in ("NaN", "Infinity", "null", *strings):
        body = f'{{"inputs":[{{"name":"x","datatype":"{datatype}","shape":[1],"data":[{token}]}}]}}'
        _refused(body.encode(), "tensor 'x': element 0")


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("FP16", 70000.0), ("FP16", -1e6), ("BF16", 1e39), ("FP32", 1e300)],
)
def test_a_finite_number_too_large_for_its_float_datatype_is_refused(
    datatype: str, value: float
) -> None:
    _refused(_body([1.0, value], datatype=datatype, shape=[2]), "element 1 .* too large for")


def test_a_number_past_float64_is_refused_not_read_as_infinity() -> None:
    _refused(b'{"inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[1e999]}]}', "1e999")
    _refused(
        b'{"inputs":[{"name":"x","datatype":"FP64","shape":[1],"data":[NaN, %s]}]}' % (b"9" * 5000),
        "out of range of a 64-bit float",
    )


def test_zero_row_inputs_decode_to_empty_arrays() -> None:
    request = codecs.request_from_json(_body([], shape=[0, 4]), model_name="m")
    assert request.inputs[0].data.shape == (0, 4)


def test_more_dimensions_than_numpy_holds_are_refused() -> None:
    _refused(_body([1], shape=[1] * 40), "at most 32")
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1] * 70)
    message.raw_input_contents.append(b"\0\0\0\0")
    with pytest.raises(errors.TensorError, match="at most 32"):
        codecs.request_from_proto(message)


def test_client_values_in_messages_are_bounded() -> None:
    huge = "n" * 100_000
    error = _refused(_body([1], datatype=huge), "unknown datatype")
    assert len(str(error)) < 500
    error = _refused(json.dumps({"inputs": [{"name": huge, "datatype": "X"}]}).encode(), "tensor")
    assert len(str(error)) < 500
    tensor = {"name": "x", "datatype": "FP32", "shape": [0.5] * 100_000, "data": []}
    error = _refused(json.dumps({"inputs": [tensor]}).encode(), "shape is")
    assert len(str(error)) < 500


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff",  # a truncated varint
        pb.ModelInferRequest(model_name="m").SerializeToString()
        + b"\x0a\x05ab",  # runs past the end
        b"\x0a\x02\xff\xfe",  # model_name is not UTF-8: upb refuses the message
        b"\x1a\x02\xc3\x28",  # id is not UTF-8
    ],
    ids=["varint", "truncated", "name-not-utf8", "id-not-utf8"],
)
def test_undecodable_model_infer_bytes_are_invalid_requests(body: bytes) -> None:
    with pytest.raises(errors.InvalidRequestError, match="not a valid protobuf message"):
        codecs.parse_request(body)


def test_a_bin_routing_header_that_is_not_utf8_is_an_invalid_request() -> None:
    with pytest.raises(errors.InvalidRequestError, match="mm-model-id-bin is not UTF-8"):
        routing.routing_headers_from_grpc([("mm-model-id-bin", b"\xff\xfe")])
    with pytest.raises(errors.InvalidRequestError, match="mm-dest is not UTF-8"):
        routing.routing_headers_from_grpc([("mm-dest", b"\xff")], internal=True)


def test_a_model_refusing_its_input_is_invalid_argument_and_still_an_inference_error() -> None:
    error = errors.InputRejectedError("scikit-learn refused the input: X has 3 features")
    assert status.grpc_code(error) is grpc.StatusCode.INVALID_ARGUMENT
    assert status.http_status(error) == 400
    assert isinstance(error, errors.InferenceError)
    rebuilt = status.error_from_rpc(
        grpc.StatusCode.INVALID_ARGUMENT, str(error), status.error_trailers(error)
    )
    assert type(rebuilt) is errors.InputRejectedError


def test_wire_text_escapes_surrogates_and_bounds_the_size() -> None:
    assert status.wire_text("name '\ud800'") == "name '\\ud800'"
    long = status.wire_text("é" * 10_000)
    assert len(long.encode()) <= status.MAX_MESSAGE_BYTES
    assert long.endswith("(message cut, 20000 bytes)")


def test_a_rest_error_naming_a_surrogate_can_be_serialised() -> None:
    response = error_response(400, "tensor '\ud800': bad")
    assert orjson.loads(response.body) == {"error": "tensor '\\ud800': bad"}


def test_quote_client_value_bounds_and_escapes() -> None:
    assert errors.quote_client_value("abc") == "'abc'"
    assert errors.quote_client_value("a\ud800\n") == "'a\\ud800\\n'"
    cut = errors.quote_client_value("x" * 1000, limit=10)
    assert cut == "'xxxxxxxxxx...' (1000 characters)"


def test_limited_log_writes_one_line_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    limited = LimitedLog(logging.getLogger("test.limited"), interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.limited"):
        assert limited.log(logging.WARNING, "a", "bad %s", "one")
        assert not limited.log(logging.WARNING, "a", "bad %s", "two")
        assert not limited.log(logging.WARNING, "a", "bad %s", "three")
        assert limited.log(logging.WARNING, "b", "other kind")
        clock.advance(61)
        assert limited.log(logging.WARNING, "a", "bad %s", "four")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "bad one",
        "other kind",
        "bad four (2 more like it since the last one, not logged)",
    ]
