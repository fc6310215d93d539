"""Hypothesis strategies for fuzzing request decoding: v2 REST JSON bodies
with wrong types, odd numbers, surrogates and deep nesting, and byte-level
mutations (for JSON and for protobuf serialisations alike)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from meshserve.protocol.datatypes import Datatype

__all__ = ["FUZZ", "mutated", "rest_bodies"]

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
    return draw(mutated(raw)) if draw(st.integers(0, 3)) == 0 else raw


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
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
