"""What a failed call to an external runtime means, as meshserve's errors.

A meshserve runtime names the exact error type in its trailers; a foreign
one has only a gRPC status code, which means different things for a load
(ModelMesh's SPI: INVALID_ARGUMENT and FAILED_PRECONDITION say no load was
attempted) and for a prediction.
"""

from __future__ import annotations

import enum

import grpc
import grpc.aio

from meshserve import errors
from meshserve.protocol.status import ERROR_TYPE_KEY, error_from_rpc

__all__ = ["CallKind", "call_error"]


class CallKind(enum.Enum):
    """What a failed call was doing: a foreign runtime's bare status code
    means different things for a load and for a prediction."""

    LOAD = "load"
    MANAGE = "manage"
    INFER = "infer"


def call_error(
    exc: grpc.aio.AioRpcError,
    *,
    call: CallKind,
    runtime: str,
    state: str,
    timeout_s: float | None,
) -> errors.MeshServeError:
    """The error ``exc`` stands for. ``runtime`` names the runtime in
    messages (``the runtime at ADDRESS``); ``state`` says what it is when
    it is unavailable; ``timeout_s`` is the call's deadline, if it had one."""
    code, details = exc.code(), exc.details() or exc.code().name
    trailers = tuple(exc.trailing_metadata() or ())
    if any(key == ERROR_TYPE_KEY for key, _ in trailers):
        # A meshserve runtime named the exact type.
        return error_from_rpc(code, details, trailers)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return errors.UnavailableError(f"{runtime} is {state}: {details}")
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        within = f"within {timeout_s} s" if timeout_s is not None else f"in time ({details})"
        if call is CallKind.LOAD:
            return errors.LoadTimeoutError(f"the load did not finish {within}")
        return errors.UnavailableError(f"{runtime} did not answer {within}")
    if call is CallKind.LOAD:
        # ModelMesh's SPI: these two say no load was attempted.
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION):
            return errors.LoadNotAttemptedError(details)
        return errors.ModelLoadError(details)
    error = error_from_rpc(code, details)
    if call is CallKind.INFER and (
        type(error) is errors.MeshServeError or isinstance(error, errors.ModelLoadError)
    ):
        return errors.InferenceError(details)
    return error
