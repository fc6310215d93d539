"""InferParameter messages <-> Python parameter values."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from meshserve.errors import InvalidRequestError, quote_client_value
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.inference import Parameters, ParameterValue

__all__ = [
    "parameter_from_proto",
    "parameter_to_proto",
    "parameters_from_proto",
    "parameters_to_proto",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def parameter_from_proto(message: pb.InferParameter, *, key: str = "") -> ParameterValue:
    """The Python value of one InferParameter.

    Raises InvalidRequestError when no member of the oneof is set.
    """
    choice = message.WhichOneof("parameter_choice")
    if choice is None:
        raise InvalidRequestError(
            f"parameter {quote_client_value(key)} has no value; expected one of bool_param, "
            "int64_param, "
            "string_param, double_param, uint64_param"
        )
    value: ParameterValue = getattr(message, choice)
    return value


def parameter_to_proto(value: ParameterValue, *, key: str = "") -> pb.InferParameter:
    """One InferParameter holding ``value``.

    ints go to int64_param, or uint64_param when above the int64 range.
    """
    message = pb.InferParameter()
    _set(message, key, value)
    return message


def parameters_from_proto(entries: Mapping[str, pb.InferParameter]) -> Parameters:
    """A protobuf parameters map as a dict."""
    return {key: parameter_from_proto(value, key=key) for key, value in entries.items()}


def parameters_to_proto(
    params: Parameters, *, into: MutableMapping[str, pb.InferParameter]
) -> None:
    """Write ``params`` into a protobuf parameters map (maps cannot be assigned)."""
    for key, value in params.items():
        _set(into[key], key, value)


def _set(message: pb.InferParameter, key: str, value: ParameterValue) -> None:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        message.bool_param = value
    elif isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            message.int64_param = value
        elif _INT64_MAX < value <= _UINT64_MAX:
            message.uint64_param = value
        else:
            raise InvalidRequestError(
                f"parameter {quote_client_value(key)} is {value}, outside int64 and uint64; "
                "expected an integer in [-2**63, 2**64 - 1]"
            )
    elif isinstance(value, float):
        message.double_param = value
    elif isinstance(value, str):
        message.string_param = value
    else:
        raise InvalidRequestError(
            f"parameter {quote_client_value(key)} is a {type(value).__name__}; "
            "expected bool, int, float or str"
        )
