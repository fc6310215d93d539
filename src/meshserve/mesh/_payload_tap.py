"""An inference's request and response offered to the payload processors.

Only the instance a client called does it (not the ones it forwards to), so
that each inference is processed once. Offering never waits
(``payloads/_dispatch.py``); a response that came decoded (REST) is
serialized by the processor that reads it, not here.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from meshserve.errors import MeshServeError
from meshserve.payloads import Payload, PayloadKind, PayloadSink
from meshserve.protocol.status import grpc_code

__all__ = ["INFER_METHOD", "tapped"]

T = TypeVar("T")

INFER_METHOD = "inference.GRPCInferenceService/ModelInfer"

Data = bytes | Callable[[], bytes]


async def tapped(
    sink: PayloadSink,
    work: Awaitable[T],
    *,
    model_id: str,
    vmodel_id: str | None,
    request: Data,
    response: Callable[[T], Data],
) -> T:
    """``work``'s result, its request offered to ``sink`` before and its
    response (or failure status) after."""
    offered = Payload(
        kind=PayloadKind.REQUEST,
        id=uuid.uuid4().hex,
        model_id=model_id,
        vmodel_id=vmodel_id,
        method=INFER_METHOD,
        data=request,
    )
    sink.offer(offered)
    try:
        result = await work
    except MeshServeError as exc:
        sink.offer(
            dataclasses.replace(
                offered, kind=PayloadKind.RESPONSE, data=b"", status=grpc_code(exc).name
            )
        )
        raise
    sink.offer(
        dataclasses.replace(offered, kind=PayloadKind.RESPONSE, data=response(result), status="OK")
    )
    return result
