"""gRPC requests are decoded after the auth check, by the handler's guard,
and bytes that do not decode end the call with INVALID_ARGUMENT (grpc's own
decoding ended it with UNKNOWN, before any check ran).

A real grpc.aio server on 127.0.0.1 with the interceptors `meshserve up`
uses; the handlers count how often their request is parsed.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
import yaml

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.security import Authenticator, AuthSettings, token_sha256
from meshserve.server import GrpcAuthInterceptor
from meshserve.server._grpc_guard import RequestDecodingInterceptor

pytestmark = pytest.mark.integration

TOKEN = "tok-editor"
REGISTER = "/mmesh.ModelMesh/registerModel"
METADATA = "/inference.GRPCInferenceService/ModelMetadata"
LIVE = "/inference.GRPCInferenceService/ServerLive"
GARBAGE = b"\xff\xff\xff\xff"
NOT_UTF8_ID = b"\x0a\x02\xff\xfe"  # field 1 (modelId / name), two bytes that are not UTF-8


class Parses:
    """Counts the requests each handler's deserializer parses."""

    def __init__(self) -> None:
        self.count = 0

    def parser(self, message: type[Any]) -> Callable[[bytes], Any]:
        def parse(data: bytes) -> Any:
            self.count += 1
            return message.FromString(data)

        return parse


def _handlers(parses: Parses) -> grpc.GenericRpcHandler:
    async def register(request: mm.RegisterModelRequest, context: Any) -> mm.ModelStatusInfo:
        return mm.ModelStatusInfo()

    async def metadata(request: v2.ModelMetadataRequest, context: Any) -> v2.ModelMetadataResponse:
        return v2.ModelMetadataResponse(name=request.name)

    async def live(request: v2.ServerLiveRequest, context: Any) -> v2.ServerLiveResponse:
        return v2.ServerLiveResponse(live=True)

    def unary(behavior: Any, request: type[Any], response: type[Any]) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=parses.parser(request),
            response_serializer=response.SerializeToString,
        )

    handlers = {
        REGISTER: unary(register, mm.RegisterModelRequest, mm.ModelStatusInfo),
        METADATA: unary(metadata, v2.ModelMetadataRequest, v2.ModelMetadataResponse),
        LIVE: unary(live, v2.ServerLiveRequest, v2.ServerLiveResponse),
    }

    class Handlers(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
            return handlers.get(details.method)

    return Handlers()


@pytest.fixture
def authenticator(tmp_path: pathlib.Path) -> Authenticator:
    path = tmp_path / "tokens.yaml"
    entry = {
        "name": "ed",
        "role": "editor",
        "namespaces": ["*"],
        "tokenSha256": token_sha256(TOKEN),
    }
    path.write_text(yaml.safe_dump({"principals": [entry]}))
    return Authenticator.from_settings(AuthSettings(enabled=True, tokens_file=path))


@contextlib.asynccontextmanager
async def _serving(
    parses: Parses, *, authenticator: Authenticator | None
) -> AsyncIterator[grpc.aio.Channel]:
    interceptors: list[Any] = []
    if authenticator is not None:
        interceptors.append(GrpcAuthInterceptor(authenticator=authenticator))
    # As `meshserve up` builds its servers: the decoding interceptor last.
    server = grpc.aio.server(interceptors=[*interceptors, RequestDecodingInterceptor()])
    server.add_generic_rpc_handlers((_handlers(parses),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(grace=None)


async def _call(
    channel: grpc.aio.Channel,
    method: str,
    body: bytes,
    *,
    token: str | None = None,
    metadata: tuple[tuple[str, str | bytes], ...] = (),
) -> tuple[grpc.StatusCode, str]:
    if token is not None:
        metadata = (("authorization", f"Bearer {token}"), *metadata)
    call = channel.unary_unary(method)  # identity serializers: raw bytes both ways
    try:
        await call(body, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("method", [REGISTER, METADATA])
async def test_garbage_without_a_credential_is_refused_before_it_is_parsed(
    authenticator: Authenticator, method: str
) -> None:
    parses = Parses()
    async with _serving(parses, authenticator=authenticator) as channel:
        code, _ = await _call(channel, method, GARBAGE)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert parses.count == 0
        code, _ = await _call(channel, method, GARBAGE, token="wrong")
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert parses.count == 0


@pytest.mark.parametrize("method", [REGISTER, METADATA])
@pytest.mark.parametrize("body", [GARBAGE, NOT_UTF8_ID], ids=["garbage", "string-not-utf8"])
async def test_an_undecodable_body_from_a_known_caller_is_invalid_argument(
    authenticator: Authenticator, method: str, body: bytes
) -> None:
    parses = Parses()
    async with _serving(parses, authenticator=authenticator) as channel:
        code, details = await _call(channel, method, body, token=TOKEN)
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in details
        # A valid request is parsed once, though auth read its model id first.
        parses.count = 0
        valid = mm.RegisterModelRequest(modelId="team-a/m").SerializeToString()
        code, _ = await _call(channel, REGISTER, valid, token=TOKEN)
        assert code is grpc.StatusCode.OK
        assert parses.count == 1


async def test_a_routing_header_that_is_not_utf8_is_invalid_argument(
    authenticator: Authenticator,
) -> None:
    body = v2.ModelMetadataRequest(name="team-a/m").SerializeToString()
    async with _serving(Parses(), authenticator=authenticator) as channel:
        code, details = await _call(
            channel, METADATA, body, token=TOKEN, metadata=(("mm-model-id-bin", b"\xff\xfe"),)
        )
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "mm-model-id-bin is not UTF-8" in details


@pytest.mark.parametrize("method", [REGISTER, METADATA, LIVE])
async def test_without_auth_undecodable_bodies_are_invalid_argument_not_unknown(
    method: str,
) -> None:
    # ServerLiveRequest has no field 1: those bytes are an unknown field there.
    bodies = (GARBAGE,) if method == LIVE else (GARBAGE, NOT_UTF8_ID)
    async with _serving(Parses(), authenticator=None) as channel:
        for body in bodies:
            code, _ = await _call(channel, method, body)
            assert code is grpc.StatusCode.INVALID_ARGUMENT
        assert (await _call(channel, LIVE, b""))[0] is grpc.StatusCode.OK
