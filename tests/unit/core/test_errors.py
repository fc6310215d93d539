"""Error messages stay bounded whatever the client sent."""

from __future__ import annotations

import grpc

from meshserve import errors
from meshserve.protocol import status


def test_a_short_value_is_quoted_as_before() -> None:
    assert errors.quote_client_value("team-a/fraud") == "'team-a/fraud'"
    assert errors.quote_client_value("modèle-ü") == "'modèle-ü'"


def test_a_long_value_is_cut_and_its_length_told() -> None:
    quoted = errors.quote_client_value("m" * 100_000)
    assert quoted == f"'{'m' * 128}...' (100000 characters)"
    assert len(errors.quote_client_value("m" * 100_000, limit=10)) < 40


def test_unprintable_characters_are_escaped() -> None:
    quoted = errors.quote_client_value("a\nb\x00c\udc80")
    assert quoted == "'a\\nb\\x00c\\udc80'"
    quoted.encode()  # valid UTF-8: a lone surrogate would raise here


def test_other_values_are_a_bounded_repr() -> None:
    deep: object = []
    for _ in range(5000):  # deeper than the recursion limit
        deep = [deep]
    assert len(errors.quote_client_value(deep)) < 50
    assert len(errors.quote_client_value(list(range(100_000)))) < 100
    assert len(errors.quote_client_value({"k" * 10_000: "v" * 10_000})) <= 256
    assert errors.quote_client_value(None) == "None"
    assert errors.quote_client_value(1.5) == "1.5"


def test_every_message_is_cut_at_the_bound_in_utf8_bytes() -> None:
    assert str(errors.InvalidRequestError("short")) == "short"
    for char in ("x", "é", "日"):
        message = str(errors.ModelNotFoundError(char * 100_000))
        assert len(message.encode()) < errors.MAX_MESSAGE_BYTES + 64
        assert message.endswith("bytes)")
    # Rebuilt from a peer's message: bounded too.
    rebuilt = status.error_from_rpc(grpc.StatusCode.NOT_FOUND, "n" * 100_000)
    assert len(str(rebuilt)) < errors.MAX_MESSAGE_BYTES + 64


def test_a_tensor_error_quotes_the_tensor_name() -> None:
    assert str(errors.TensorError("x", "bad")) == "tensor 'x': bad"
    long = errors.TensorError("t" * 100_000, "bad")
    assert "(100000 characters): bad" in str(long)
    assert len(str(long)) < 300
