"""Strategies and assertions shared by the test_codecs_* modules (no tests here)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from meshserve.protocol.codecs._checks import FLOAT_DATATYPES
from meshserve.protocol.datatypes import Datatype, numpy_dtype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

# 0-size dimensions and scalars (shape ()) included.
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
NAMES = st.text(alphabet="abcxyz_019", min_size=1, max_size=6)
PARAMETER_VALUES = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
PARAMETERS = st.dictionaries(st.text(min_size=1, max_size=6), PARAMETER_VALUES, max_size=3)


@st.composite
def arrays(draw: st.DrawFn, datatype: Datatype, *, utf8: bool = False) -> np.ndarray:
    """An array of ``datatype``; ``utf8`` keeps BYTES elements JSON-safe."""
    shape = draw(SHAPES)
    if datatype is Datatype.BYTES:
        elements = st.text(max_size=6).map(str.encode) if utf8 else st.binary(max_size=6)
        return draw(hnp.arrays(np.object_, shape, elements=elements))
    if datatype is Datatype.BF16:
        wide = draw(hnp.arrays(np.float32, shape, elements=st.floats(width=32)))
        return wide.astype(ml_dtypes.bfloat16)
    return draw(hnp.arrays(numpy_dtype(datatype), shape))


@st.composite
def tensors(
    draw: st.DrawFn, datatype: Datatype | None = None, *, name: str = "t", utf8: bool = False
) -> Tensor:
    chosen = datatype if datatype is not None else draw(st.sampled_from(list(Datatype)))
    return Tensor(name, chosen, draw(arrays(chosen, utf8=utf8)), draw(PARAMETERS))


@st.composite
def tensor_lists(draw: st.DrawFn, *, utf8: bool = False) -> list[Tensor]:
    count = draw(st.integers(min_value=0, max_value=4))
    return [draw(tensors(name=f"t{i}", utf8=utf8)) for i in range(count)]


@st.composite
def requests(draw: st.DrawFn, *, utf8: bool = False) -> InferenceRequest:
    outputs = draw(st.lists(NAMES, max_size=2, unique=True))
    return InferenceRequest(
        model_name=draw(NAMES),
        model_version=draw(st.sampled_from(["", "1", "v2"])),
        id=draw(st.text(max_size=5)),
        parameters=draw(PARAMETERS),
        inputs=draw(tensor_lists(utf8=utf8)),
        outputs=[RequestedOutput(n, draw(PARAMETERS)) for n in outputs],
    )


@st.composite
def responses(draw: st.DrawFn, *, utf8: bool = False) -> InferenceResponse:
    return InferenceResponse(
        model_name=draw(NAMES),
        model_version=draw(st.sampled_from(["", "1"])),
        id=draw(st.text(max_size=5)),
        parameters=draw(PARAMETERS),
        outputs=draw(tensor_lists(utf8=utf8)),
    )


def assert_array_equal(expected: np.ndarray, actual: np.ndarray, datatype: Datatype) -> None:
    """Same dtype, shape and values; NaN equals NaN."""
    assert actual.dtype == numpy_dtype(datatype), (actual.dtype, datatype)
    assert actual.shape == expected.shape
    if datatype is Datatype.BYTES:
        assert [_as_bytes(v) for v in actual.ravel().tolist()] == [
            _as_bytes(v) for v in expected.ravel().tolist()
        ]
    elif datatype in FLOAT_DATATYPES:
        # float64 holds FP16/BF16/FP32 values exactly.
        want, got = expected.astype(np.float64), actual.astype(np.float64)
        assert np.array_equal(np.isnan(want), np.isnan(got))
        assert np.array_equal(want[~np.isnan(want)], got[~np.isnan(got)])
    else:
        assert np.array_equal(expected, actual)


def assert_tensors_equal(expected: list[Tensor], actual: list[Tensor]) -> None:
    assert [t.name for t in actual] == [t.name for t in expected]
    for want, got in zip(expected, actual, strict=True):
        assert got.datatype is want.datatype
        assert got.parameters == want.parameters
        assert_array_equal(want.data, got.data, want.datatype)


def assert_requests_equal(expected: InferenceRequest, actual: InferenceRequest) -> None:
    assert (actual.model_name, actual.model_version, actual.id) == (
        expected.model_name,
        expected.model_version,
        expected.id,
    )
    assert actual.parameters == expected.parameters
    assert actual.outputs == expected.outputs
    assert_tensors_equal(expected.inputs, actual.inputs)


def assert_responses_equal(expected: InferenceResponse, actual: InferenceResponse) -> None:
    assert (actual.model_name, actual.model_version, actual.id) == (
        expected.model_name,
        expected.model_version,
        expected.id,
    )
    assert actual.parameters == expected.parameters
    assert_tensors_equal(expected.outputs, actual.outputs)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    assert isinstance(value, bytes), type(value)
    return value
