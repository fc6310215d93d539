"""REST JSON inference bodies <-> InferenceRequest / InferenceResponse.

The request body has no model name or version (they are in the URL), so
``request_from_json`` takes them as arguments and ignores any in the body.
The pieces below the public functions are shared with the binary
extension (``_binary``), which differs only in where tensor data comes from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson

from meshserve.errors import InvalidRequestError, TensorError, quote_client_value
from meshserve.protocol.codecs._checks import check_unique_names, parse_datatype
from meshserve.protocol.codecs._json_data import array_from_json, json_from_array
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    Parameters,
    RequestedOutput,
    Tensor,
)

__all__ = [
    "MISSING",
    "JsonBody",
    "TensorHeader",
    "load_json",
    "request_from_json",
    "request_from_obj",
    "request_json",
    "request_to_json",
    "response_from_json",
    "response_from_obj",
    "response_json",
    "response_to_json",
    "response_to_json_bytes",
    "tensor_from_json",
    "tensor_header_json",
    "tensor_json",
]

JsonBody = bytes | bytearray | memoryview | str | dict[str, Any]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Marks a tensor object without a ``data`` member (None is a JSON value)."""


@dataclass(frozen=True, slots=True)
class TensorHeader:
    """A REST tensor object, checked, before its data is decoded."""

    name: str
    datatype: Datatype
    shape: tuple[int, ...]
    parameters: Parameters
    data: Any


TensorDecoder = Callable[[TensorHeader], Tensor]


def request_from_json(
    body: JsonBody, *, model_name: str, model_version: str = ""
) -> InferenceRequest:
    """The InferenceRequest a REST JSON body carries.

    Raises InvalidRequestError for a body that is not a JSON object of the
    v2 shape, TensorError for a malformed tensor.
    """
    return request_from_obj(
        load_json(body, what="request"),
        model_name=model_name,
        model_version=model_version,
        tensor=tensor_from_json,
    )


def request_to_json(request: InferenceRequest) -> dict[str, Any]:
    """The REST JSON body (as a dict) for ``request``; data given flat."""
    return request_json(request, [tensor_json(t, numpy_ok=False) for t in request.inputs])


def response_to_json(response: InferenceResponse) -> dict[str, Any]:
    """The REST JSON body (as a dict) for ``response``; data given flat."""
    return response_json(response, [tensor_json(t, numpy_ok=False) for t in response.outputs])


def response_to_json_bytes(response: InferenceResponse) -> bytes:
    """The REST JSON body for ``response``, serialised.

    Faster than ``orjson.dumps(response_to_json(r))``: numeric arrays go to
    orjson as numpy arrays, not lists of Python numbers.
    """
    body = response_json(response, [tensor_json(t, numpy_ok=True) for t in response.outputs])
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def response_from_json(body: JsonBody) -> InferenceResponse:
    """The InferenceResponse a REST JSON body carries."""
    return response_from_obj(load_json(body, what="response"), tensor=tensor_from_json)


def load_json(body: JsonBody, *, what: str) -> dict[str, Any]:
    """A JSON object from a body, or InvalidRequestError.

    orjson first; Python's json module when that fails, because it accepts
    the NaN/Infinity tokens that Python clients (tritonclient) send. Either
    way the body is refused when it nests deeper than orjson's 1024 levels,
    holds a string that is not Unicode (a lone surrogate escape such as
    ``"\\ud800"``) or a number too large for a 64-bit float.
    """
    if isinstance(body, dict):
        return body
    try:
        loaded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        loaded = _python_json(body, what=what, orjson_error=exc)
    if not isinstance(loaded, dict):
        raise InvalidRequestError(
            f"{what} body is a JSON {type(loaded).__name__}; expected an object"
        )
    return loaded


def _python_json(
    body: bytes | bytearray | memoryview | str, *, what: str, orjson_error: Exception
) -> Any:
    """What Python's json module reads from a body orjson refused, holding
    only what orjson would accept besides the non-finite tokens."""
    text = bytes(body) if isinstance(body, memoryview) else body
    try:
        loaded = json.loads(text, parse_float=_finite_float, parse_int=_float_sized_int)
        # Its C encoder refuses a lone surrogate the decoder let through.
        json.dumps(loaded, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        # Raised by the C scanner before it goes deeper; nothing is left half-done.
        raise InvalidRequestError(
            f"{what} body nests too deeply; JSON values may nest at most 1024 levels"
        ) from None
    except UnicodeError:
        raise InvalidRequestError(
            f"{what} body is not valid UTF-8 JSON: it holds bytes that are not UTF-8 "
            "or a string with a lone surrogate escape"
        ) from None
    except ValueError:
        raise InvalidRequestError(f"{what} body is not valid JSON: {orjson_error}") from None
    return loaded


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InvalidRequestError(
            f"number {quote_client_value(text, limit=40)} is out of range of a 64-bit float; "
            'give infinities as "Infinity" or "-Infinity"'
        )
    return value


def _float_sized_int(text: str) -> int | float:
    # As orjson does: an integer outside 64 bits is read as a float.
    value = int(text) if len(text) <= 20 else None
    if value is not None and -(2**63) <= value < 2**64:
        return value
    return _finite_float(text)


def request_from_obj(
    obj: dict[str, Any], *, model_name: str, model_version: str, tensor: TensorDecoder
) -> InferenceRequest:
    """An InferenceRequest from a parsed body; ``tensor`` decodes each input."""
    inputs = _array_member(obj, "inputs", what="request", required=True)
    outputs = _array_member(obj, "outputs", what="request", required=False)
    decoded = [tensor(_header(item, kind="input", index=i)) for i, item in enumerate(inputs)]
    check_unique_names(decoded)
    return InferenceRequest(
        model_name=model_name,
        model_version=model_version,
        id=_string_member(obj, "id", what="request"),
        parameters=_parameters(obj.get("parameters"), owner=None),
        inputs=decoded,
        outputs=[_requested_output(item, index=i) for i, item in enumerate(outputs)],
    )


def response_from_obj(obj: dict[str, Any], *, tensor: TensorDecoder) -> InferenceResponse:
    """An InferenceResponse from a parsed body; ``tensor`` decodes each output."""
    outputs = _array_member(obj, "outputs", what="response", required=True)
    decoded = [tensor(_header(item, kind="output", index=i)) for i, item in enumerate(outputs)]
    check_unique_names(decoded)
    return InferenceResponse(
        model_name=_string_member(obj, "model_name", what="response"),
        model_version=_string_member(obj, "model_version", what="response"),
        id=_string_member(obj, "id", what="response"),
        parameters=_parameters(obj.get("parameters"), owner=None),
        outputs=decoded,
    )


def tensor_from_json(header: TensorHeader) -> Tensor:
    """A tensor whose data is the JSON ``data`` member."""
    if header.data is MISSING:
        hint = (
            "; it gives binary_data_size but this body has no binary part"
            if "binary_data_size" in header.parameters
            else ""
        )
        raise TensorError(header.name, f"has no 'data' member{hint}")
    array = array_from_json(header.name, header.datatype, header.shape, header.data)
    return Tensor(header.name, header.datatype, array, dict(header.parameters))


def tensor_header_json(tensor: Tensor, parameters: Parameters) -> dict[str, Any]:
    """A REST tensor object without ``data``."""
    obj: dict[str, Any] = {
        "name": tensor.name,
        "datatype": parse_datatype(tensor.name, tensor.datatype).value,
        "shape": list(tensor.shape),
    }
    if parameters:
        obj["parameters"] = dict(parameters)
    return obj


def request_json(request: InferenceRequest, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A request body around already-encoded inputs."""
    obj: dict[str, Any] = {}
    if request.id:
        obj["id"] = request.id
    if request.parameters:
        obj["parameters"] = dict(request.parameters)
    obj["inputs"] = inputs
    if request.outputs:
        obj["outputs"] = [_requested_output_json(o) for o in request.outputs]
    return obj


def response_json(response: InferenceResponse, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A response body around already-encoded outputs."""
    obj: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version:
        obj["model_version"] = response.model_version
    if response.id:
        obj["id"] = response.id
    if response.parameters:
        obj["parameters"] = dict(response.parameters)
    obj["outputs"] = outputs
    return obj


def tensor_json(tensor: Tensor, *, numpy_ok: bool) -> dict[str, Any]:
    """A REST tensor object with flat ``data`` (see ``json_from_array``)."""
    obj = tensor_header_json(tensor, tensor.parameters)
    datatype = parse_datatype(tensor.name, tensor.datatype)
    obj["data"] = json_from_array(tensor.name, datatype, tensor.data, numpy_ok=numpy_ok)
    return obj


def _requested_output_json(requested: RequestedOutput) -> dict[str, Any]:
    obj: dict[str, Any] = {"name": requested.name}
    if requested.parameters:
        obj["parameters"] = dict(requested.parameters)
    return obj


def _header(item: object, *, kind: str, index: int) -> TensorHeader:
    if not isinstance(item, dict):
        raise InvalidRequestError(
            f"{kind} {index} is a JSON {type(item).__name__}; expected an object"
        )
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidRequestError(f"{kind} {index} has no string 'name'")
    if "datatype" not in item:
        raise TensorError(name, "has no 'datatype'")
    datatype = parse_datatype(name, item["datatype"])
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(
        type(dim) is int
        for dim in shape  # bool is an int subclass, and not a dimension
    ):
        raise TensorError(
            name,
            f"shape is {quote_client_value(shape)}; expected a JSON array of non-negative integers",
        )
    return TensorHeader(
        name=name,
        datatype=datatype,
        shape=tuple(shape),
        parameters=_parameters(item.get("parameters"), owner=name),
        data=item.get("data", MISSING),
    )


def _requested_output(item: object, *, index: int) -> RequestedOutput:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidRequestError(
            f"requested output {index} is {quote_client_value(item)}; "
            "expected an object with a string 'name'"
        )
    name: str = item["name"]
    return RequestedOutput(name=name, parameters=_parameters(item.get("parameters"), owner=name))


def _parameters(obj: object, *, owner: str | None) -> Parameters:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        _parameter_error(owner, f"parameters is a JSON {type(obj).__name__}; expected an object")
    for key, value in obj.items():
        if not isinstance(value, bool | int | float | str):
            _parameter_error(
                owner,
                f"parameter {quote_client_value(key)} is {quote_client_value(value)}; "
                "expected a string, number or boolean",
            )
    return dict(obj)


def _parameter_error(owner: str | None, problem: str) -> NoReturn:
    if owner is None:
        raise InvalidRequestError(problem)
    raise TensorError(owner, problem)


def _array_member(obj: dict[str, Any], key: str, *, what: str, required: bool) -> list[Any]:
    value = obj.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise InvalidRequestError(
            f"{what} '{key}' is {'missing' if value is None else quote_client_value(value)}; "
            "expected a JSON array"
        )
    return value


def _string_member(obj: dict[str, Any], key: str, *, what: str) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{what} '{key}' is {quote_client_value(value)}; expected a string"
        )
    return value
