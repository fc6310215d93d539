"""Fuzzing the decode paths: whatever the bytes, a request decodes or is
refused with the domain's client error (InvalidRequestError: 400 /
INVALID_ARGUMENT), never another exception, and the refusal's message can
be sent.

Bounded in time: a fixed number of examples each (a few seconds here, well
under 30 s on a loaded 2-core machine), no per-example deadline.
"""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshserve import errors
from meshserve.protocol import codecs, status
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest
from meshserve.protocol.peek import peek_model_name
from meshserve.server._rest_errors import error_response

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

DEEP = "@@deep@@"
"""A leaf replaced after serialising by JSON nested that many levels
(json.dumps itself would recurse too deep to write it)."""

# -- REST JSON ---------------------------------------------------------------

_texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=8),  # surrogates too
    st.sampled_from(["", "x", "input-0", "\ud800", "a\udfffb", "NaN", "Infinity", "é"]),
)
_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 65504, 65520, 70000, 2**63, 2**64, 3.5e38, 1e308]),
)
_leaves = st.one_of(st.none(), st.booleans(), _numbers, _texts, st.just(DEEP))
_json = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_texts, children, max_size=3)
    ),
    max_leaves=12,
)
_datatypes = st.one_of(st.sampled_from([d.value for d in Datatype]), _json)
_shapes = st.one_of(
    st.lists(st.integers(min_value=-2, max_value=4), max_size=4),
    st.lists(st.sampled_from([0, 1, 2**31, 2**63, 2**64]), max_size=3),
    st.lists(st.just(1), min_size=31, max_size=70),
    _json,
)
_flat_data = st.lists(_leaves, max_size=8)
_nested_data = st.lists(st.lists(_leaves, min_size=2, max_size=2), max_size=4)
_data = st.one_of(_flat_data, _nested_data, _json)


@st.composite
def _tensor(draw: st.DrawFn) -> object:
    tensor: dict[str, object] = {}
    for key, values in (
        ("name", _texts),
        ("datatype", _datatypes),
        ("shape", _shapes),
        ("data", _data),
        ("parameters", st.dictionaries(_texts, _leaves, max_size=2)),
    ):
        if draw(st.integers(0, 9)):  # usually present
            tensor[key] = draw(values)
    return tensor if draw(st.integers(0, 19)) else draw(_json)


@st.composite
def rest_bodies(draw: st.DrawFn) -> bytes:
    """A v2 inference body: mostly the right shape, with wrong types, odd
    numbers, surrogates, deep nesting, and sometimes bytes mutated."""
    body: dict[str, object] = {"inputs": draw(st.lists(_tensor(), max_size=3))}
    if draw(st.booleans()):
        body["outputs"] = draw(st.lists(st.one_of(_json, st.fixed_dictionaries({"name": _texts}))))
    if draw(st.booleans()):
        body["parameters"] = draw(_json)
    if draw(st.booleans()):
        body["id"] = draw(_leaves)
    top: object = body if draw(st.integers(0, 19)) else draw(_json)
    ascii_only = draw(st.booleans())
    text = json.dumps(top, ensure_ascii=ascii_only)
    while DEEP in text:
        levels = draw(st.sampled_from([2, 33, 40, 1025, 3000]))
        text = text.replace(f'"{DEEP}"', "[" * levels + "1" + "]" * levels, 1)
    raw = text.encode("utf-8", "surrogatepass")  # raw lone surrogates: not UTF-8
    return draw(_mutated(raw)) if draw(st.integers(0, 3)) == 0 else raw


@st.composite
def _mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` with a few bytes flipped, inserted, deleted or repeated."""
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["flip", "insert", "delete", "repeat", "truncate"]))
        if action == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=6))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif action == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


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
@given(body=st.sampled_from(SEEDS).flatmap(_mutated))
def test_mutated_model_infer_bytes_decode_or_are_invalid_requests(body: bytes) -> None:
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
