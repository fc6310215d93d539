"""One dispatch: decode, merge what may be merged, run, split, encode."""

from __future__ import annotations

import pathlib

import numpy as np

from meshserve.errors import InputRejectedError, InvalidRequestError
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, Tensor
from meshserve.runtime import ModelSpec
from meshserve.runtime._batch_run import Outcome, run_batch
from meshserve.runtime._builtin import BuiltinRuntime
from meshserve.settings import RuntimeSettings
from tests._examples import iris_rows
from tests.unit.protocol.test_codecs_support import assert_array_equal
from tests.unit.protocol.test_codecs_tritonclient import ALL, sample
from tests.unit.runtime.test_batch_merge import request


class EchoModel:
    """A Predictor answering each input as output "y"; rows whose first
    value is -1.0 are refused, and with ``fixed_batch`` so is any call
    of more than one row (a model exported with batch size 1)."""

    def __init__(self, *, fixed_batch: bool = False) -> None:
        self.fixed_batch = fixed_batch
        self.calls: list[int] = []

    def infer(self, request: InferenceRequest, *, model_id: str | None = None) -> InferenceResponse:
        data = request.inputs[0].data
        self.calls.append(int(data.shape[0]))
        if self.fixed_batch and data.shape[0] > 1:
            raise InputRejectedError("this model takes one row at a time")
        if data.dtype.kind == "f" and (data.reshape(len(data), -1)[:, 0] == -1.0).any():
            raise InputRejectedError("a row starts with -1")
        return InferenceResponse(
            model_name=model_id or request.model_name,
            id=request.id,
            outputs=[Tensor("y", request.inputs[0].datatype, data.copy())],
        )


def body(req: InferenceRequest, *, raw: bool = True) -> bytes:
    encoded: bytes = codecs.request_to_proto(req, raw=raw).SerializeToString()
    return encoded


def decoded(outcome: Outcome) -> pb.ModelInferResponse:
    assert isinstance(outcome, bytes), outcome
    return pb.ModelInferResponse.FromString(outcome)


@ALL
def test_every_datatype_merges_into_one_call_and_comes_back_per_request(
    datatype: Datatype,
) -> None:
    whole = sample(datatype, (6, 2))
    parts = [whole[:1], whole[1:3], whole[3:]]
    items = [body(request(p, datatype, id=f"r{i}")) for i, p in enumerate(parts)]
    model = EchoModel()
    run = run_batch(model, "m", items, merging=True)

    assert run.calls == [3] and model.calls == [6]
    for index, (part, outcome) in enumerate(zip(parts, run.outcomes, strict=True)):
        message = decoded(outcome)
        assert message.id == f"r{index}"
        response = codecs.response_from_proto(message)
        assert_array_equal(part, response.outputs[0].data, datatype)


def test_each_request_gets_the_form_it_sent() -> None:
    rows = np.ones((1, 2), np.float32)
    items = [body(request(rows), raw=True), body(request(rows), raw=False)]
    run = run_batch(EchoModel(), "m", items, merging=True)
    assert run.calls == [2]
    raw, typed = (decoded(o) for o in run.outcomes)
    assert raw.raw_output_contents and not typed.raw_output_contents
    assert list(typed.outputs[0].contents.fp32_contents) == [1.0, 1.0]


def test_decoded_requests_come_back_decoded() -> None:
    first = request(np.ones((1, 2), np.float32), id="a")
    second = request(np.ones((2, 2), np.float32), id="b")
    run = run_batch(EchoModel(), "m", [first, second], merging=True)
    assert run.calls == [2]
    answers = [o for o in run.outcomes if isinstance(o, InferenceResponse)]
    assert [(a.id, a.outputs[0].data.shape) for a in answers] == [("a", (1, 2)), ("b", (2, 2))]


def test_a_failing_request_fails_alone() -> None:
    good = np.ones((1, 2), np.float32)
    items = [body(request(good, id="a")), body(request(-good, id="bad")), body(request(good))]
    run = run_batch(EchoModel(), "m", items, merging=True)

    assert isinstance(run.outcomes[1], InputRejectedError)
    assert decoded(run.outcomes[0]).id == "a"
    assert decoded(run.outcomes[2]).outputs[0].name == "y"
    # The merged call, then each request alone; the model still takes batches.
    assert run.calls == [3, 1, 1, 1]
    assert not run.merge_failed


def test_a_malformed_request_fails_alone() -> None:
    good = body(request(np.ones((1, 2), np.float32)))
    run = run_batch(EchoModel(), "m", [good, b"\xff\xff not protobuf", good], merging=True)
    assert isinstance(run.outcomes[1], InvalidRequestError)
    assert run.calls == [2]
    assert all(isinstance(run.outcomes[i], bytes) for i in (0, 2))


def test_a_model_that_cannot_take_merged_batches_is_reported() -> None:
    rows = np.ones((1, 2), np.float32)
    run = run_batch(EchoModel(fixed_batch=True), "m", [body(request(rows))] * 2, merging=True)
    assert all(isinstance(o, bytes) for o in run.outcomes)
    assert run.merge_failed


def test_requests_that_differ_go_in_separate_calls() -> None:
    items = [
        body(request(np.ones((1, 2), np.float32))),
        body(request(np.ones((1, 3), np.float32))),  # another shape
        body(request(np.ones((1, 2), np.float64), Datatype.FP64)),  # another datatype
        body(request(np.ones((1, 2), np.float32), outputs=("y",))),  # other outputs
        body(request(np.ones((2, 2), np.float32))),  # merges with the first
    ]
    model = EchoModel()
    run = run_batch(model, "m", items, merging=True)
    assert sorted(run.calls) == [1, 1, 1, 2]
    assert sorted(model.calls) == [1, 1, 1, 3]
    assert all(isinstance(o, bytes) for o in run.outcomes)


def test_without_merging_every_request_runs_alone() -> None:
    rows = np.ones((1, 2), np.float32)
    run = run_batch(EchoModel(), "m", [body(request(rows))] * 3, merging=False)
    assert run.calls == [1, 1, 1]


def test_a_real_model_answers_merged_as_it_does_alone(
    example_models: dict[str, pathlib.Path],
) -> None:
    runtime = BuiltinRuntime(settings=RuntimeSettings(preload_libraries=False))
    path = example_models["sklearn-skops"]
    runtime.load(ModelSpec(model_id="iris", model_type="sklearn", model_path=str(path)))
    rows = iris_rows(6).astype(np.float64)
    items = [body(request(rows[i : i + 2], Datatype.FP64, name="input-0")) for i in (0, 2, 4)]
    merged = run_batch(runtime, "iris", items, merging=True)
    alone = run_batch(runtime, "iris", items, merging=False)
    assert merged.calls == [3] and alone.calls == [1, 1, 1]
    assert merged.outcomes == alone.outcomes
