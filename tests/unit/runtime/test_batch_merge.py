"""Merging requests along the batch dimension and splitting the answer back."""

from __future__ import annotations

import numpy as np
import pytest

from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)
from meshserve.runtime._batch_merge import (
    UnsplittableError,
    batch_rows,
    merge,
    merge_key,
    split,
)
from tests.unit.protocol.test_codecs_support import assert_array_equal
from tests.unit.protocol.test_codecs_tritonclient import ALL, sample


def request(
    data: np.ndarray,
    datatype: Datatype = Datatype.FP32,
    *,
    id: str = "",
    name: str = "x",
    parameters: dict[str, bool | int | float | str] | None = None,
    outputs: tuple[str, ...] = (),
) -> InferenceRequest:
    return InferenceRequest(
        model_name="m",
        id=id,
        inputs=[Tensor(name, datatype, data)],
        parameters=dict(parameters or {}),
        outputs=[RequestedOutput(o) for o in outputs],
    )


def echo(merged: InferenceRequest) -> InferenceResponse:
    """What a model that returns its input as output "y" answers."""
    tensor = merged.inputs[0]
    return InferenceResponse(
        model_name=merged.model_name, outputs=[Tensor("y", tensor.datatype, tensor.data.copy())]
    )


@ALL
def test_every_datatype_merges_and_splits_back(datatype: Datatype) -> None:
    whole = sample(datatype, (6, 2))
    parts = [whole[:1], whole[1:3], whole[3:]]
    requests = [request(p, datatype, id=f"r{i}") for i, p in enumerate(parts)]
    assert len({merge_key(r) for r in requests}) == 1

    merged = merge(requests)
    assert_array_equal(whole, merged.inputs[0].data, datatype)
    answers = split(echo(merged), requests)

    assert [a.id for a in answers] == ["r0", "r1", "r2"]
    for part, answer in zip(parts, answers, strict=True):
        assert_array_equal(part, answer.outputs[0].data, datatype)


def test_per_request_fields_stay_per_request() -> None:
    rows = np.ones((1, 2), np.float32)
    first = request(rows, id="a", parameters={"p": 1}, outputs=("y",))
    second = request(rows * 2, id="b", parameters={"p": 1}, outputs=("y",))
    first.model_version, second.model_version = "1", "2"
    answers = split(echo(merge([first, second])), [first, second])
    assert [(a.id, a.model_version) for a in answers] == [("a", "1"), ("b", "2")]
    # The merged call carries the shared parameters and requested outputs.
    merged = merge([first, second])
    assert merged.parameters == {"p": 1}
    assert [o.name for o in merged.outputs] == ["y"]


@pytest.mark.parametrize(
    "other",
    [
        request(np.ones((1, 3), np.float32)),  # another non-batch shape
        request(np.ones((1, 2), np.float64), Datatype.FP64),  # another datatype
        request(np.ones((1, 2), np.float32), name="z"),  # another input
        request(np.ones((1, 2), np.float32), outputs=("y",)),  # other requested outputs
        request(np.ones((1, 2), np.float32), parameters={"p": 1}),  # other parameters
        request(np.ones((1, 2), np.float32), parameters={"p": True}),
    ],
    ids=["shape", "datatype", "input", "outputs", "parameters", "parameter-type"],
)
def test_requests_that_differ_do_not_share_a_key(other: InferenceRequest) -> None:
    base = request(np.ones((1, 2), np.float32))
    if other.parameters.get("p") is True:
        base.parameters = {"p": 1}
    assert merge_key(base) != merge_key(other)


def test_rows_ids_and_versions_are_not_part_of_the_key() -> None:
    one = request(np.ones((1, 2), np.float32), id="a")
    three = request(np.ones((3, 2), np.float32), id="b")
    three.model_version = "7"
    assert merge_key(one) == merge_key(three)


def test_requests_without_a_batch_dimension_have_no_key() -> None:
    scalar = request(np.float32(1.0) * np.ones((), np.float32))
    ragged = InferenceRequest(
        model_name="m",
        inputs=[
            Tensor("a", Datatype.FP32, np.ones((2, 2), np.float32)),
            Tensor("b", Datatype.FP32, np.ones((3, 2), np.float32)),
        ],
    )
    empty = InferenceRequest(model_name="m", inputs=[])
    for unbatchable in (scalar, ragged, empty):
        assert batch_rows(unbatchable) is None
        assert merge_key(unbatchable) is None


def test_an_answer_without_the_batch_dimension_cannot_be_split() -> None:
    requests = [request(np.ones((1, 2), np.float32)), request(np.ones((2, 2), np.float32))]
    summed = InferenceResponse(
        model_name="m", outputs=[Tensor("y", Datatype.FP32, np.ones((1,), np.float32))]
    )
    with pytest.raises(UnsplittableError):
        split(summed, requests)
