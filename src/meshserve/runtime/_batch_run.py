"""One dispatch of the batcher, run in a worker thread: decode each request,
merge those that may be merged into one call of the built-in runtime, cut
the answer back and encode each request's own.

A merged call that fails is run again one request at a time, so a bad
request fails alone and its batch-mates get their answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meshserve.protocol import codecs
from meshserve.protocol.inference import InferenceRequest, InferenceResponse
from meshserve.runtime._batch_merge import MergeKey, merge, merge_key, split

__all__ = ["BatchRun", "Item", "Outcome", "Predictor", "run_batch"]


class Predictor(Protocol):
    """What a dispatch calls: ``BuiltinRuntime.infer``."""

    def infer(
        self, request: InferenceRequest, *, model_id: str | None = None
    ) -> InferenceResponse: ...


Item = bytes | InferenceRequest
"""A request as a host receives it: a serialized ModelInferRequest (gRPC),
or one already decoded (REST)."""

Outcome = bytes | InferenceResponse | Exception
"""Its answer in the same form (bytes for bytes), or the error it alone met."""


@dataclass(slots=True)
class BatchRun:
    """What one dispatch gave: an outcome per item, in order."""

    outcomes: list[Outcome]
    calls: list[int] = field(default_factory=list)
    """Requests per runtime call made (1 for a request run alone)."""
    merge_failed: bool = False
    """A merged call failed while each of its requests alone succeeded: the
    model cannot take merged batches (a fixed batch dimension, an output
    without one)."""


@dataclass(slots=True)
class _Decoded:
    index: int
    request: InferenceRequest
    raw: bool | None
    """The response form for a gRPC item (raw when the request was); None
    for a decoded item, answered decoded."""


def run_batch(
    runtime: Predictor, model_id: str, items: Sequence[Item], *, merging: bool
) -> BatchRun:
    """Run ``items`` (requests for ``model_id``) in as few runtime calls as
    their merge keys allow (one each unless ``merging``). Blocking."""
    run = BatchRun(outcomes=[])
    groups: dict[MergeKey, list[_Decoded]] = {}
    singles: list[_Decoded] = []
    for index, item in enumerate(items):
        try:
            decoded = _decode(index, item)
        except Exception as exc:
            run.outcomes.append(exc)
            continue
        # Replaced below: every decoded request gets its own outcome.
        run.outcomes.append(_NOT_RUN)
        key = merge_key(decoded.request) if merging else None
        if key is None:
            singles.append(decoded)
        else:
            groups.setdefault(key, []).append(decoded)
    for group in groups.values():
        if len(group) == 1:
            singles.extend(group)
        else:
            _run_merged(runtime, model_id, group, run)
    for decoded in singles:
        _run_single(runtime, model_id, decoded, run)
    return run


_NOT_RUN = RuntimeError("not run")


def _decode(index: int, item: Item) -> _Decoded:
    if isinstance(item, InferenceRequest):
        return _Decoded(index, item, None)
    message = codecs.parse_request(item)
    raw = bool(message.raw_input_contents) or not message.inputs
    return _Decoded(index, codecs.request_from_proto(message), raw)


def _answer(decoded: _Decoded, response: InferenceResponse) -> Outcome:
    """The response in the form its request came in."""
    if decoded.raw is None:
        return response
    encoded: bytes = codecs.response_to_proto(response, raw=decoded.raw).SerializeToString()
    return encoded


def _run_single(runtime: Predictor, model_id: str, decoded: _Decoded, run: BatchRun) -> bool:
    run.calls.append(1)
    try:
        response = runtime.infer(decoded.request, model_id=model_id)
        run.outcomes[decoded.index] = _answer(decoded, response)
    except Exception as exc:
        run.outcomes[decoded.index] = exc
        return False
    return True


def _run_merged(runtime: Predictor, model_id: str, group: list[_Decoded], run: BatchRun) -> None:
    requests = [decoded.request for decoded in group]
    run.calls.append(len(group))
    try:
        response = runtime.infer(merge(requests), model_id=model_id)
        answers = split(response, requests)
        # Encoding fails alone too (an output the request's form cannot hold).
        for decoded, answer in zip(group, answers, strict=True):
            try:
                run.outcomes[decoded.index] = _answer(decoded, answer)
            except Exception as exc:
                run.outcomes[decoded.index] = exc
        return
    except Exception:  # UnsplittableError among them
        pass
    # One of them (or the merge itself) failed the call: each runs alone, so
    # only a bad request fails.
    succeeded = [_run_single(runtime, model_id, decoded, run) for decoded in group]
    if all(succeeded):
        run.merge_failed = True
