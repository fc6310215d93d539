"""Fuzzing the decode paths: whatever the bytes, a request decodes or is
refused with the domain's client error (InvalidRequestError: 400 /
INVALID_ARGUMENT), never another exception, and the refusal's message can
be sent.

Bounded in time: a fixed number of examples each (a few seconds here, well
under 30 s on a loaded 2-core machine), no per-example deadline.
"""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from meshserve import errors
from meshserve.protocol import codecs, status
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.inference import InferenceRequest
from meshserve.protocol.peek import peek_model_name
from meshserve.server._rest_errors import error_response
from tests._fuzz import FUZZ, mutated, rest_bodies


def _sendable(exc: errors.MeshServeError) -> None:
    """The refusal's message goes out on both wires."""
    message = status.wire_message(exc)
    message.encode("utf-8")
    assert len(message.encode()) <= status.MAX_MESSAGE_BYTES
    assert orjson.loads(error_response(400, str(exc)).body)["error"]


def _texts_are_utf8(request: InferenceRequest) -> None:
    names = [request.id] + [t.name for t in request.inputs] + [o.name for o in request.outputs]
    for name in names:
        name.encode("utf-8")  # a surrogate here would break the reply later


@FUZZ
@given(body=rest_bodies())
def test_rest_json_bodies_decode_or_are_invalid_requests(body: bytes) -> None:
    try:
        request = codecs.request_from_json(body, model_name="m")
    except errors.InvalidRequestError as exc:
        _sendable(exc)
    else:
        _texts_are_utf8(request)


@FUZZ
@given(body=rest_bodies(), extra=st.binary(max_size=16), cut=st.integers(-4, 4))
def test_binary_extension_bodies_decode_or_are_invalid_requests(
    body: bytes, extra: bytes, cut: int
) -> None:
    try:
        codecs.decode_binary_request(
            body + extra, json_length=len(body) + cut, model_name="m", model_version=""
        )
    except errors.InvalidRequestError as exc:
        _sendable(exc)


# -- gRPC ModelInferRequest --------------------------------------------------


def _seeds() -> list[bytes]:
    """Valid serialisations covering typed and raw contents, BYTES, FP16,
    parameters and requested outputs."""
    typed = pb.ModelInferRequest(model_name="iris", id="req-1")
    tensor = typed.inputs.add(name="input-0", datatype="INT32", shape=[2, 2])
    tensor.contents.int_contents.extend([1, 2, 3, 4])
    tensor.parameters["binary_data_size"].int64_param = 16
    text = typed.inputs.add(name="words", datatype="BYTES", shape=[2])
    text.contents.bytes_contents.extend([b"ab", b"\xff\x00"])
    typed.outputs.add(name="predict").parameters["binary_data"].bool_param = True
    typed.parameters["priority"].string_param = "high"
    raw = pb.ModelInferRequest(model_name="fp", model_version="1")
    raw.inputs.add(name="a", datatype="FP32", shape=[1, 3])
    raw.inputs.add(name="b", datatype="FP16", shape=[2])
    raw.inputs.add(name="c", datatype="BYTES", shape=[1])
    raw.raw_input_contents.extend([b"\0" * 12, b"\x00\x3c\x00\x7c", b"\x02\0\0\0hi"])
    return [m.SerializeToString() for m in (typed, raw)]


SEEDS = _seeds()


@FUZZ
@given(body=st.sampled_from(SEEDS).flatmap(mutated))
def testmutated_model_infer_bytes_decode_or_are_invalid_requests(body: bytes) -> None:
    try:
        peek_model_name(body)
    except errors.InvalidRequestError as exc:
        _sendable(exc)
    try:
        request = codecs.request_from_proto(codecs.parse_request(body))
    except errors.InvalidRequestError as exc:
        _sendable(exc)
    else:
        _texts_are_utf8(request)


def test_the_seeds_decode() -> None:
    for seed in SEEDS:
        assert codecs.request_from_proto(codecs.parse_request(seed)).inputs
