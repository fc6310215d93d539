"""The examples published with the protocol specifications, decoded and re-encoded.

Sources: the KServe v2 protocol (required_api.md, "Inference Request
Examples") and Triton's binary tensor data extension
(extension_binary_data.md, "Examples").
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from meshserve.errors import TensorError
from meshserve.protocol import codecs
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

# As published. Note input1: shape [3] but one element of data.
V2_REQUEST = b"""{
  "id" : "42",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "data" : [ 1, 2, 3, 4 ]
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "data" : [ true ]
    }
  ],
  "outputs" : [
    {
      "name" : "output0"
    }
  ]
}"""

# As published, less a missing comma after "id" : "42" (the text is not JSON).
V2_RESPONSE = b"""{
  "id" : "42",
  "outputs" : [
    {
      "name" : "output0",
      "shape" : [ 3, 2 ],
      "datatype"  : "FP32",
      "data" : [ 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 ]
    }
  ]
}"""

BINARY_REQUEST_HEADER = b"""{
  "model_name" : "mymodel",
  "inputs" : [
    {
      "name" : "input0",
      "shape" : [ 2, 2 ],
      "datatype" : "UINT32",
      "parameters" : {
        "binary_data_size" : 16
      }
    },
    {
      "name" : "input1",
      "shape" : [ 3 ],
      "datatype" : "BOOL",
      "parameters" : {
        "binary_data_size" : 3
      }
    }
  ],
  "outputs" : [
    {
      "name" : "output0",
      "parameters" : {
        "binary_data" : true
      }
    }
  ]
}"""

BINARY_RESPONSE_HEADER = b"""{
  "outputs" : [
    {
      "name" : "output0",
      "shape" : [ 3, 2 ],
      "datatype"  : "FP32",
      "parameters" : {
        "binary_data_size" : 24
      }
    }
  ]
}"""

INPUT0 = np.array([[1, 2], [3, 4]], dtype=np.uint32)
INPUT1 = np.array([True, False, True])
OUTPUT0 = np.array([[1.0, 1.1], [2.0, 2.1], [3.0, 3.1]], dtype=np.float32)


def test_published_v2_request_is_refused_for_its_short_bool_data() -> None:
    # The spec's own example gives one BOOL for shape [3]; meshserve checks
    # element counts, so it names input1 rather than guessing the rest.
    with pytest.raises(TensorError) as caught:
        codecs.request_from_json(V2_REQUEST, model_name="mymodel")
    assert caught.value.tensor == "input1"
    assert "data holds 1 elements; shape [3] needs 3" in str(caught.value)


def test_v2_request_with_consistent_bool_data_round_trips() -> None:
    body = V2_REQUEST.replace(b"[ true ]", b"[ true, false, true ]")
    request = codecs.request_from_json(body, model_name="mymodel", model_version="1")
    assert (request.model_name, request.model_version, request.id) == ("mymodel", "1", "42")
    assert request.outputs == [RequestedOutput("output0")]
    assert [(t.name, t.datatype) for t in request.inputs] == [
        ("input0", Datatype.UINT32),
        ("input1", Datatype.BOOL),
    ]
    assert np.array_equal(request.inputs[0].data, INPUT0)
    assert request.inputs[0].data.dtype == np.uint32
    assert np.array_equal(request.inputs[1].data, INPUT1)
    assert codecs.request_to_json(request) == {
        "id": "42",
        "inputs": [
            {"name": "input0", "datatype": "UINT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
            {"name": "input1", "datatype": "BOOL", "shape": [3], "data": [True, False, True]},
        ],
        "outputs": [{"name": "output0"}],
    }


def test_nested_data_reads_like_flat_data() -> None:
    body = V2_REQUEST.replace(b"[ 1, 2, 3, 4 ]", b"[ [ 1, 2 ], [ 3, 4 ] ]").replace(
        b"[ true ]", b"[ true, false, true ]"
    )
    request = codecs.request_from_json(body, model_name="mymodel")
    assert np.array_equal(request.inputs[0].data, INPUT0)


def test_v2_response_round_trips() -> None:
    response = codecs.response_from_json(V2_RESPONSE)
    assert response.id == "42"
    (output,) = response.outputs
    assert (output.name, output.datatype, output.shape) == ("output0", Datatype.FP32, (3, 2))
    assert np.array_equal(output.data, OUTPUT0)
    again = orjson.loads(codecs.response_to_json_bytes(response))
    assert again["id"] == "42"
    assert again["outputs"] == [orjson.loads(V2_RESPONSE)["outputs"][0]]


def test_binary_extension_request_example() -> None:
    body = BINARY_REQUEST_HEADER + INPUT0.astype("<u4").tobytes() + b"\x01\x00\x01"
    assert len(body) - len(BINARY_REQUEST_HEADER) == 19  # "the total size ... is 19 bytes"
    request = codecs.decode_binary_request(
        body, json_length=len(BINARY_REQUEST_HEADER), model_name="mymodel"
    )
    assert request.model_name == "mymodel"
    assert np.array_equal(request.inputs[0].data, INPUT0)
    assert np.array_equal(request.inputs[1].data, INPUT1)
    assert [t.parameters for t in request.inputs] == [{}, {}]
    assert request.outputs == [RequestedOutput("output0", {"binary_data": True})]
    # Re-encoded the client way, it decodes to the same request.
    again, length = codecs.encode_binary_request(request)
    assert length is not None and len(again) - length == 19
    decoded = codecs.decode_binary_request(again, json_length=length, model_name="mymodel")
    assert np.array_equal(decoded.inputs[0].data, INPUT0)
    assert np.array_equal(decoded.inputs[1].data, INPUT1)


def test_binary_extension_response_example() -> None:
    request = InferenceRequest(
        "mymodel", [], outputs=[RequestedOutput("output0", {"binary_data": True})]
    )
    response = InferenceResponse("mymodel", [Tensor("output0", Datatype.FP32, OUTPUT0)])
    body, length = codecs.encode_binary_response(response, request=request)
    assert length is not None and len(body) - length == 24  # "<yy+24>"
    header = orjson.loads(body[:length])
    assert header["outputs"] == orjson.loads(BINARY_RESPONSE_HEADER)["outputs"]
    assert body[length:] == OUTPUT0.astype("<f4").tobytes()
    published = BINARY_RESPONSE_HEADER + OUTPUT0.astype("<f4").tobytes()
    decoded = codecs.decode_binary_response(published, json_length=len(BINARY_RESPONSE_HEADER))
    assert np.array_equal(decoded.outputs[0].data, OUTPUT0)
    assert decoded.outputs[0].parameters == {}
