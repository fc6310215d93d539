"""Tensor codecs of the Open Inference Protocol (KServe v2).

Each wire form of an inference request or response converts to and from
the records in ``meshserve.protocol.inference``:

- gRPC (``ModelInferRequest`` / ``ModelInferResponse``), typed or raw
  contents: ``parse_request`` (bytes to message, or InvalidRequestError;
  ``parse_message`` for any message type), ``request_from_proto``, ``request_to_proto``,
  ``response_from_proto``, ``response_to_proto``; model metadata and
  ``InferParameter`` values too.
- REST JSON: ``request_from_json``, ``request_to_json``,
  ``response_to_json``, ``response_to_json_bytes``, ``response_from_json``.
- REST with Triton's binary tensor data extension:
  ``decode_binary_request`` / ``encode_binary_response`` (server side),
  ``encode_binary_request`` / ``decode_binary_response`` (client side).
- The raw form of one tensor, shared by gRPC raw contents and binary REST
  data: ``encode_raw`` / ``decode_raw``.

Decoders raise ``meshserve.errors.TensorError`` (naming the tensor) for a
malformed tensor and ``InvalidRequestError`` for a malformed message.
Encoders never cast: an array whose dtype does not hold the tensor's
datatype is a TensorError too.

Choices the specifications leave open:

- Typed gRPC encoding of a message holding FP16 or BF16 (no typed field)
  produces a raw message, since raw contents are all-or-nothing.
- JSON writes NaN/Infinity as the strings "NaN", "Infinity", "-Infinity"
  and reads those, ``null`` and Python's bare NaN tokens.
- BYTES in JSON are UTF-8 strings; a BYTES element that is not UTF-8 is a
  TensorError when encoding JSON (binary data carries any bytes).
- Raw-decoded arrays are read-only views of the received buffer.
"""

from meshserve.protocol.codecs._binary import (
    INFERENCE_HEADER_CONTENT_LENGTH,
    decode_binary_request,
    decode_binary_response,
    encode_binary_request,
    encode_binary_response,
)
from meshserve.protocol.codecs._grpc import (
    parse_message,
    parse_request,
    request_from_proto,
    request_to_proto,
    response_from_proto,
    response_to_proto,
)
from meshserve.protocol.codecs._grpc_metadata import metadata_from_proto, metadata_to_proto
from meshserve.protocol.codecs._grpc_params import (
    parameter_from_proto,
    parameter_to_proto,
    parameters_from_proto,
    parameters_to_proto,
)
from meshserve.protocol.codecs._raw import decode_raw, encode_raw
from meshserve.protocol.codecs._rest import (
    request_from_json,
    request_to_json,
    response_from_json,
    response_to_json,
    response_to_json_bytes,
)

__all__ = [
    "INFERENCE_HEADER_CONTENT_LENGTH",
    "decode_binary_request",
    "decode_binary_response",
    "decode_raw",
    "encode_binary_request",
    "encode_binary_response",
    "encode_raw",
    "metadata_from_proto",
    "metadata_to_proto",
    "parameter_from_proto",
    "parameter_to_proto",
    "parameters_from_proto",
    "parameters_to_proto",
    "parse_message",
    "parse_request",
    "request_from_json",
    "request_from_proto",
    "request_to_json",
    "request_to_proto",
    "response_from_json",
    "response_from_proto",
    "response_to_json",
    "response_to_json_bytes",
    "response_to_proto",
]
