"""The internal port's guard (the mesh secret) and what it serves, in process."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import stat
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import grpc.aio
import pytest

from meshserve.errors import PeerTimeoutError, PeerUnreachableError
from meshserve.mesh import Instance
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol.peer import MESH_AUTH_HEADER, PEER_METHODS, PeerClient
from meshserve.security import MESH_SECRET_FILE, MeshSecret, MeshSecretError
from meshserve.server._internal_port import (
    MESH_SECRET_KEY,
    InternalPortGuard,
    internal_handlers,
    secret_from_store,
)
from meshserve.store import PrefixedStore, SqliteStore

SECRET = MeshSecret("a" * 64, source="test")
OTHER = MeshSecret("b" * 64, source="test")
_INFER = "/inference.GRPCInferenceService/ModelInfer"
_METADATA = "/inference.GRPCInferenceService/ModelMetadata"
HANG = b"hang"


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    if request == HANG:
        await asyncio.Event().wait()  # a peer that hangs (SIGSTOP)
    return request


async def _live(
    request: v2.ServerLiveRequest, context: grpc.aio.ServicerContext
) -> v2.ServerLiveResponse:
    return v2.ServerLiveResponse(live=True)


async def _metadata(
    request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
) -> v2.ModelMetadataResponse:
    return v2.ModelMetadataResponse(name=request.name)


@contextlib.asynccontextmanager
async def _internal_port(denied: list[tuple[str, str]]) -> AsyncIterator[str]:
    guard = InternalPortGuard(secret=SECRET, on_denied=lambda k, m: denied.append((k, m)))
    server = grpc.aio.server(interceptors=[guard])
    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(_echo),
        "ModelMetadata": grpc.unary_unary_rpc_method_handler(
            _metadata,
            request_deserializer=v2.ModelMetadataRequest.FromString,
            response_serializer=v2.ModelMetadataResponse.SerializeToString,
        ),
        "ServerLive": grpc.unary_unary_rpc_method_handler(
            _live,
            request_deserializer=v2.ServerLiveRequest.FromString,
            response_serializer=v2.ServerLiveResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def _raw_call(
    address: str, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> bytes:
    async with grpc.aio.insecure_channel(address) as channel:
        response: bytes = await channel.unary_unary(method)(body, metadata=metadata, timeout=10)
        return response


@pytest.mark.parametrize(
    "metadata",
    [(), ((MESH_AUTH_HEADER, OTHER.token),), ((MESH_AUTH_HEADER, ""),), (("authorization", "x"),)],
    ids=["none", "another-mesh", "empty", "a-bearer-token"],
)
async def test_a_call_without_this_mesh_s_secret_is_unauthenticated(
    metadata: tuple[tuple[str, str], ...],
) -> None:
    denied: list[tuple[str, str]] = []
    async with _internal_port(denied) as address:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _raw_call(address, _INFER, b"body", metadata)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "only other instances of this mesh" in (raised.value.details() or "")
    assert SECRET.token not in (raised.value.details() or "")
    assert denied == [("unauthenticated", _INFER)]


async def test_the_body_of_a_refused_call_is_never_parsed() -> None:
    # Garbage that would fail to parse (INTERNAL) if the handler ran.
    async with _internal_port([]) as address:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await _raw_call(address, _METADATA, b"\xff\xff\xff\xff")
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_unknown_methods_count_under_one_label_and_are_unimplemented_with_the_secret() -> (
    None
):
    denied: list[tuple[str, str]] = []
    admin = "/meshserve.admin.v1.Admin/ApplyResources"
    async with _internal_port(denied) as address:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _raw_call(address, admin, b"")
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await _raw_call(address, admin, b"", ((MESH_AUTH_HEADER, SECRET.token),))
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert unknown.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert denied == [("unauthenticated", "(other)")]


async def test_a_peer_client_holding_the_secret_is_served_and_one_holding_another_is_told_why() -> (
    None
):
    async with _internal_port([]) as address:
        member = PeerClient(max_message_bytes=1 << 20, timeout_s=10, mesh_token=SECRET.token)
        stranger = PeerClient(max_message_bytes=1 << 20, timeout_s=10, mesh_token=OTHER.token)
        try:
            assert await member.infer(address, b"payload", ()) == b"payload"
            metadata = await member.model_metadata(address, "m", ())
            assert metadata.name == "m"
            with pytest.raises(PeerUnreachableError, match="refused this instance's mesh secret"):
                await stranger.infer(address, b"payload", ())
        finally:
            await member.close()
            await stranger.close()


async def test_a_forward_past_its_hop_deadline_is_a_peer_timeout_and_live_probes_the_peer() -> None:
    member = PeerClient(max_message_bytes=1 << 20, timeout_s=30, mesh_token=SECRET.token)
    try:
        async with _internal_port([]) as address:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(PeerTimeoutError, match="did not answer in time"):
                await member.infer(address, HANG, (), timeout_s=0.2)
            assert loop.time() - started < 5  # not the client's 30 s default
            # The probe of a suspect peer: it answers ServerLive.
            await member.live(address, timeout_s=5)
        # Stopped: nothing answers there any more.
        with pytest.raises(PeerUnreachableError):
            await member.live(address, timeout_s=1)
    finally:
        await member.close()


def test_the_internal_port_serves_exactly_what_peers_call() -> None:
    # The handlers only hold the instance; no call reaches it here.
    handlers = internal_handlers(cast(Instance, object()))
    probe = [
        *PEER_METHODS,
        "/mmesh.ModelMesh/registerModel",
        "/mmesh.ModelMesh/setVModel",
        "/mmesh.ModelMesh/getModelStatus",
        "/meshserve.admin.v1.Admin/ApplyResources",
        "/meshserve.admin.v1.Admin/ListModels",
        "/inference.GRPCInferenceService/ServerReady",
    ]
    served = set()
    for method in probe:
        details = cast(Any, type("Details", (), {"method": method, "invocation_metadata": ()}))
        if any(handler.service(details) is not None for handler in handlers):
            served.add(method)
    assert served == PEER_METHODS
    assert {
        _INFER,
        _METADATA,
        "/mmesh.ModelMesh/ensureLoaded",
        # The liveness probe of a peer that did not answer in time.
        "/inference.GRPCInferenceService/ServerLive",
    } == PEER_METHODS


def test_the_token_is_derived_and_the_secret_never_shown() -> None:
    text = "s3cr3t-" * 6
    secret = MeshSecret(text, source="test")
    assert text not in secret.token and text not in repr(secret)
    assert secret.admits(secret.token) and secret.admits(secret.token.encode())
    assert not secret.admits(None) and not secret.admits(text) and not secret.admits("\udcff")
    assert MeshSecret(f"  {text}\n", source="test").token == secret.token


def test_a_short_secret_is_refused_without_quoting_it() -> None:
    with pytest.raises(MeshSecretError, match="at least 32 characters") as raised:
        MeshSecret("short-secret", source="mesh.secretFile")
    assert "short-secret" not in str(raised.value)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secret_file_others_may_read_is_refused(tmp_path: pathlib.Path, mode: int) -> None:
    path = tmp_path / "secret"
    path.write_text("c" * 64)
    path.chmod(mode)
    with pytest.raises(MeshSecretError, match=f"mode {mode:04o}.*0600 or stricter"):
        MeshSecret.from_file(path)


def test_up_makes_one_0600_secret_in_the_data_dir_and_keeps_it(tmp_path: pathlib.Path) -> None:
    path = MeshSecret.in_data_dir(tmp_path)
    assert path == tmp_path / MESH_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = MeshSecret.from_file(path).token
    assert MeshSecret.in_data_dir(tmp_path) == path
    assert MeshSecret.from_file(path).token == first


async def test_instances_sharing_a_store_agree_on_one_secret_kept_per_mesh(
    tmp_path: pathlib.Path,
) -> None:
    async with SqliteStore.open(tmp_path / "store.db") as store:
        blue, green = PrefixedStore(store, "mm/blue/"), PrefixedStore(store, "mm/green/")
        first = await secret_from_store(blue)
        assert (await secret_from_store(blue)).token == first.token
        assert (await secret_from_store(green)).token != first.token
        together = PrefixedStore(store, "mm/together/")
        one, other = await asyncio.gather(secret_from_store(together), secret_from_store(together))
        assert one.token == other.token
        kept = await blue.get(MESH_SECRET_KEY)
        assert kept is not None and first.token not in kept.value.decode()
