"""encode -> decode is the identity, for every datatype and every wire form."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, RequestedOutput
from tests.unit.protocol.test_codecs_support import (
    assert_requests_equal,
    assert_responses_equal,
    assert_tensors_equal,
    requests,
    responses,
    tensors,
)

PER_DATATYPE = settings(max_examples=25, deadline=None)
MIXED = settings(max_examples=50, deadline=None)
ALL = pytest.mark.parametrize("datatype", list(Datatype), ids=str)


def _grpc_request(request: InferenceRequest, *, raw: bool) -> InferenceRequest:
    wire = codecs.request_to_proto(request, raw=raw).SerializeToString()
    return codecs.request_from_proto(pb.ModelInferRequest.FromString(wire))


def _grpc_response(response: InferenceResponse, *, raw: bool) -> InferenceResponse:
    wire = codecs.response_to_proto(response, raw=raw).SerializeToString()
    return codecs.response_from_proto(pb.ModelInferResponse.FromString(wire))


def _json_request(request: InferenceRequest) -> InferenceRequest:
    body = orjson.dumps(codecs.request_to_json(request))
    return codecs.request_from_json(
        body, model_name=request.model_name, model_version=request.model_version
    )


def _binary_request(request: InferenceRequest, binary: bool | list[str]) -> InferenceRequest:
    body, length = codecs.encode_binary_request(request, binary_inputs=binary)
    return codecs.decode_binary_request(
        body,
        json_length=length,
        model_name=request.model_name,
        model_version=request.model_version,
    )


def _binary_response(response: InferenceResponse, request: InferenceRequest) -> InferenceResponse:
    body, length = codecs.encode_binary_response(response, request=request)
    return codecs.decode_binary_response(body, json_length=length)


@ALL
@PER_DATATYPE
@given(data=st.data())
def test_grpc_raw_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    tensor = data.draw(tensors(datatype))
    request = InferenceRequest("m", [tensor])
    assert_tensors_equal([tensor], _grpc_request(request, raw=True).inputs)
    response = InferenceResponse("m", [tensor])
    assert_tensors_equal([tensor], _grpc_response(response, raw=True).outputs)


@ALL
@PER_DATATYPE
@given(data=st.data())
def test_grpc_typed_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    tensor = data.draw(tensors(datatype))
    request = InferenceRequest("m", [tensor])
    message = codecs.request_to_proto(request, raw=False)
    # FP16/BF16 have no typed field: the whole message goes raw instead.
    assert bool(message.raw_input_contents) == (datatype in (Datatype.FP16, Datatype.BF16))
    assert_tensors_equal([tensor], _grpc_request(request, raw=False).inputs)
    response = InferenceResponse("m", [tensor])
    assert_tensors_equal([tensor], _grpc_response(response, raw=False).outputs)


@ALL
@PER_DATATYPE
@given(data=st.data())
def test_rest_json_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    tensor = data.draw(tensors(datatype, utf8=True))
    assert_tensors_equal([tensor], _json_request(InferenceRequest("m", [tensor])).inputs)
    response = InferenceResponse("m", [tensor])
    from_dict = codecs.response_from_json(orjson.dumps(codecs.response_to_json(response)))
    assert_tensors_equal([tensor], from_dict.outputs)
    from_bytes = codecs.response_from_json(codecs.response_to_json_bytes(response))
    assert_tensors_equal([tensor], from_bytes.outputs)


@ALL
@PER_DATATYPE
@given(data=st.data())
def test_rest_binary_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    tensor = data.draw(tensors(datatype))
    assert_tensors_equal([tensor], _binary_request(InferenceRequest("m", [tensor]), True).inputs)
    asks_binary = InferenceRequest("m", [], outputs=[RequestedOutput("t", {"binary_data": True})])
    response = InferenceResponse("m", [tensor])
    assert_tensors_equal([tensor], _binary_response(response, asks_binary).outputs)


@MIXED
@given(request=requests(), raw=st.booleans())
def test_grpc_request_round_trip(request: InferenceRequest, raw: bool) -> None:
    assert_requests_equal(request, _grpc_request(request, raw=raw))


@MIXED
@given(response=responses(), raw=st.booleans())
def test_grpc_response_round_trip(response: InferenceResponse, raw: bool) -> None:
    assert_responses_equal(response, _grpc_response(response, raw=raw))


@MIXED
@given(request=requests(utf8=True))
def test_rest_json_request_round_trip(request: InferenceRequest) -> None:
    assert_requests_equal(request, _json_request(request))


@MIXED
@given(response=responses(utf8=True))
def test_rest_json_response_round_trip(response: InferenceResponse) -> None:
    assert_responses_equal(response, codecs.response_from_json(codecs.response_to_json(response)))


@MIXED
@given(request=requests(utf8=True), data=st.data())
def test_rest_binary_request_round_trip(request: InferenceRequest, data: st.DataObject) -> None:
    names = [t.name for t in request.inputs]
    binary = data.draw(st.one_of(st.booleans(), st.lists(st.sampled_from(names or ["x"]))))
    assert_requests_equal(request, _binary_request(request, binary))


@MIXED
@given(response=responses(utf8=True), data=st.data())
def test_rest_binary_response_round_trip(response: InferenceResponse, data: st.DataObject) -> None:
    # Each output is binary or JSON at random: per output, or for all by default.
    flags = {t.name: data.draw(st.sampled_from([True, False, None])) for t in response.outputs}
    request = InferenceRequest(
        "m",
        [],
        parameters={"binary_data_output": data.draw(st.booleans())},
        outputs=[
            RequestedOutput(n, {} if f is None else {"binary_data": f}) for n, f in flags.items()
        ],
    )
    assert_responses_equal(response, _binary_response(response, request))
