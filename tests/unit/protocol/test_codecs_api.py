"""The public surface of meshserve.protocol.codecs."""

from meshserve.protocol import codecs


def test_exported_names() -> None:
    assert sorted(codecs.__all__) == [
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
    assert codecs.INFERENCE_HEADER_CONTENT_LENGTH == "Inference-Header-Content-Length"
    functions = [getattr(codecs, name) for name in codecs.__all__ if name.islower()]
    # Implementations live in private modules; the package only re-exports.
    assert all(f.__module__.startswith("meshserve.protocol.codecs._") for f in functions)
