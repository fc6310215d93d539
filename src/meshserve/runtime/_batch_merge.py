"""Merging inference requests along the batch dimension, and splitting the
answer back: pure functions over the records of ``protocol.inference``.

Two requests merge only when their :func:`merge_key` is equal: the same
inputs (names, datatypes, every dimension but the first, tensor
parameters), the same request parameters and the same requested outputs
(names and parameters). Whatever is per request (``id``, ``model_version``,
the response form) stays out of the key and is put back by :func:`split`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    Tensor,
)

__all__ = ["MergeKey", "UnsplittableError", "batch_rows", "merge", "merge_key", "split"]

MergeKey = Hashable
"""What two requests must share to be merged (see :func:`merge_key`)."""


class UnsplittableError(Exception):
    """A merged answer that cannot be cut back into per-request answers (an
    output without the batch dimension): the requests must run one by one."""


def _frozen(parameters: Parameters) -> tuple[tuple[str, object], ...]:
    # The type goes in as well: True == 1 == 1.0 in Python, not on the wire.
    return tuple(sorted((k, (type(v).__name__, v)) for k, v in parameters.items()))


def batch_rows(request: InferenceRequest) -> int | None:
    """The rows ``request`` contributes along dimension 0, or None when it
    has no batch dimension to merge along (no inputs, a scalar input, or
    inputs whose first dimensions differ)."""
    rows: int | None = None
    for tensor in request.inputs:
        shape = tensor.data.shape
        if not shape or (rows is not None and shape[0] != rows):
            return None
        rows = int(shape[0])
    return rows


def merge_key(request: InferenceRequest) -> MergeKey | None:
    """The key requests must share to be merged; None when ``request``
    cannot be merged with any other (see :func:`batch_rows`)."""
    if batch_rows(request) is None:
        return None
    return (
        tuple(
            (t.name, t.datatype, tuple(int(d) for d in t.data.shape[1:]), _frozen(t.parameters))
            for t in request.inputs
        ),
        _frozen(request.parameters),
        tuple((o.name, _frozen(o.parameters)) for o in request.outputs),
    )


def merge(requests: Sequence[InferenceRequest]) -> InferenceRequest:
    """One request holding ``requests`` (which share a merge key) one after
    another along dimension 0."""
    first = requests[0]
    inputs = [
        Tensor(
            name=tensor.name,
            datatype=tensor.datatype,
            data=np.concatenate([request.inputs[index].data for request in requests], axis=0),
            parameters=dict(tensor.parameters),
        )
        for index, tensor in enumerate(first.inputs)
    ]
    return InferenceRequest(
        model_name=first.model_name,
        inputs=inputs,
        model_version=first.model_version,
        parameters=dict(first.parameters),
        outputs=list(first.outputs),
    )


def split(
    response: InferenceResponse, requests: Sequence[InferenceRequest]
) -> list[InferenceResponse]:
    """Cut the answer to ``merge(requests)`` into one answer per request,
    each with its own ``id`` and ``model_version``.

    Raises UnsplittableError when an output's first dimension is not the
    merged batch's.
    """
    sizes = [batch_rows(request) or 0 for request in requests]
    total = sum(sizes)
    for tensor in response.outputs:
        shape = tensor.data.shape
        if not shape or shape[0] != total:
            raise UnsplittableError(
                f"output {tensor.name!r} has shape {tuple(shape)}: no batch dimension of {total}"
            )
    answers: list[InferenceResponse] = []
    start = 0
    for request, size in zip(requests, sizes, strict=True):
        end = start + size
        answers.append(
            InferenceResponse(
                model_name=response.model_name,
                model_version=request.model_version,
                id=request.id,
                parameters=dict(response.parameters),
                outputs=[
                    Tensor(
                        name=tensor.name,
                        datatype=tensor.datatype,
                        data=tensor.data[start:end],
                        parameters=dict(tensor.parameters),
                    )
                    for tensor in response.outputs
                ],
            )
        )
        start = end
    return answers
