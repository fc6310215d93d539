import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshserve.errors import InvalidRequestError
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol.peek import peek_model_name


@given(
    name=st.text(max_size=40),
    version=st.text(max_size=5),
    raw=st.lists(st.binary(max_size=64), max_size=3),
    param=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_peek_reads_the_model_name_of_any_request(
    name: str, version: str, raw: list[bytes], param: int
) -> None:
    message = v2.ModelInferRequest(model_name=name, model_version=version, id="r1")
    message.parameters["n"].int64_param = param
    tensor = message.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    tensor.contents.fp32_contents.extend([1.0, 2.0])
    message.raw_input_contents.extend(raw)
    assert peek_model_name(message.SerializeToString()) == name


def test_the_last_occurrence_of_field_one_wins_as_in_protobuf() -> None:
    body = (
        v2.ModelInferRequest(model_name="first").SerializeToString()
        + v2.ModelInferRequest(id="x", model_name="second").SerializeToString()
    )
    assert v2.ModelInferRequest.FromString(body).model_name == "second"
    assert peek_model_name(body) == "second"


def test_field_one_after_other_fields_is_found() -> None:
    body = (
        v2.ModelInferRequest(raw_input_contents=[b"abcd"]).SerializeToString()
        + v2.ModelInferRequest(model_name="late").SerializeToString()
    )
    assert peek_model_name(body) == "late"


def test_empty_body_has_no_name() -> None:
    assert peek_model_name(b"") == ""


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"\x0a\x05abc", "runs past the end"),
        (b"\x0a", "truncated varint"),
        (b"\x0b", "unsupported wire type"),
        (b"\x0a\x02\xff\xfe", "not UTF-8"),
        (b"\x08" + b"\xff" * 11, "varint too long"),
    ],
)
def test_malformed_bodies_are_invalid_requests(body: bytes, problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=problem):
        peek_model_name(body)
