import grpc
import pytest

from meshserve import errors
from meshserve.protocol.status import error_from_rpc, error_trailers, grpc_code, http_status

CASES = [
    (errors.TensorError("x", "bad"), grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.InvalidRequestError("bad"), grpc.StatusCode.INVALID_ARGUMENT, 400),
    (errors.MessageTooLargeError("big"), grpc.StatusCode.RESOURCE_EXHAUSTED, 413),
    (errors.ModelNotFoundError("m"), grpc.StatusCode.NOT_FOUND, 404),
    (errors.AlreadyExistsError("a"), grpc.StatusCode.ALREADY_EXISTS, 409),
    (errors.PreconditionFailedError("p"), grpc.StatusCode.FAILED_PRECONDITION, 412),
    (errors.UnsupportedModelError("u"), grpc.StatusCode.INVALID_ARGUMENT, 422),
    (errors.PickleRefusedError("p"), grpc.StatusCode.FAILED_PRECONDITION, 422),
    (errors.CorruptModelError("c"), grpc.StatusCode.INTERNAL, 500),
    (errors.ModelTooLargeError("t"), grpc.StatusCode.RESOURCE_EXHAUSTED, 507),
    (errors.LoadTimeoutError("t"), grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    (errors.InferenceError("i"), grpc.StatusCode.INTERNAL, 500),
    (errors.ModelNotReadyError("n"), grpc.StatusCode.UNAVAILABLE, 503),
    (errors.RateLimitedError("r", retry_after_s=0.5), grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (errors.QuotaExceededError("q"), grpc.StatusCode.RESOURCE_EXHAUSTED, 507),
    (errors.LoadQuotaExceededError("q"), grpc.StatusCode.RESOURCE_EXHAUSTED, 507),
    (errors.MeshServeError("x"), grpc.StatusCode.INTERNAL, 500),
]


@pytest.mark.parametrize(("error", "code", "status"), CASES)
def test_each_error_maps_to_one_code_on_each_wire(
    error: errors.MeshServeError, code: grpc.StatusCode, status: int
) -> None:
    assert grpc_code(error) is code
    assert http_status(error) == status


@pytest.mark.parametrize(("error", "code", "status"), CASES)
def test_a_peer_rebuilds_the_exact_type_from_trailers(
    error: errors.MeshServeError, code: grpc.StatusCode, status: int
) -> None:
    rebuilt = error_from_rpc(code, str(error), error_trailers(error))
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_without_trailers_the_code_picks_a_sensible_type() -> None:
    rebuilt = error_from_rpc(grpc.StatusCode.NOT_FOUND, "no such model", None)
    assert isinstance(rebuilt, errors.ModelNotFoundError)
    unknown = error_from_rpc(grpc.StatusCode.DATA_LOSS, None, [("other", "x")])
    assert type(unknown) is errors.MeshServeError
    assert str(unknown) == "DATA_LOSS"


def test_retryable_flags() -> None:
    assert errors.UnavailableError("x").retryable
    assert errors.ModelNotReadyError("x").retryable
    assert not errors.CorruptModelError("x").retryable
    assert errors.TensorError("in0", "bad shape").tensor == "in0"
