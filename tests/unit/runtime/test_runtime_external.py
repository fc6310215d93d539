"""ExternalRuntime against a foreign runtime: an in-process gRPC server that
speaks the SPI the way a ModelMesh adapter does (bare status codes, no
meshserve trailers, the model id wanted in the request body)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
import pytest_asyncio

from meshserve import errors
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol._pb import model_runtime_pb2_grpc as spi_grpc
from meshserve.runtime import ExternalRuntime, ExternalState, ListenAddress, ModelSpec
from meshserve.runtime._external import INFER_METHOD, connect_address
from meshserve.runtime._model_id import id_injector


def _state(runtime: ExternalRuntime) -> ExternalState:
    # Read afresh: the state changes across awaits.
    return runtime.state


# -- addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("127.0.0.1:8085", "127.0.0.1:8085"),
        ("[::1]:8085", "[::1]:8085"),
        ("localhost:8085", "localhost:8085"),
        ("unix:/run/runtime.sock", "unix:/run/runtime.sock"),
    ],
)
def test_loopback_and_unix_addresses_are_accepted(text: str, target: str) -> None:
    assert connect_address(text).grpc_target() == target
    assert ExternalRuntime(address=text).address.grpc_target() == target


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.0.0.5:8085", "never on a network interface"),
        ("0.0.0.0:8085", "never on a network interface"),
        ("runtime.example.com:8085", "never on a network interface"),
        ("unix:relative.sock", "must be absolute"),
        ("127.0.0.1", "expected unix"),
        ("127.0.0.1:0", "port 0"),
    ],
)
def test_other_addresses_are_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ExternalRuntime(address=text)


def test_a_parsed_address_is_checked_too() -> None:
    with pytest.raises(ValueError, match="port 0"):
        connect_address(ListenAddress(host="127.0.0.1", port=0))
    assert connect_address(ListenAddress(unix_path="/run/r.sock")).is_unix


# -- model id injection -----------------------------------------------------------


def test_injection_replaces_model_name_without_decoding() -> None:
    inject = id_injector([1], v2.ModelInferRequest.DESCRIPTOR)
    assert inject is not None
    request = v2.ModelInferRequest(model_name="vmodel", id="req-1")
    request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
    body = request.SerializeToString() + inject("model__isvc-0123456789")
    parsed = v2.ModelInferRequest.FromString(body)
    assert parsed.model_name == "model__isvc-0123456789"
    assert parsed.id == "req-1"
    assert [i.name for i in parsed.inputs] == ["input-0"]
    unicode = v2.ModelInferRequest.FromString(b"" + inject("ünï"))
    assert unicode.model_name == "ünï"


def test_injection_through_a_nested_message_merges() -> None:
    inject = id_injector([2, 2], mm.RegisterModelRequest.DESCRIPTOR)  # modelInfo.path
    assert inject is not None
    request = mm.RegisterModelRequest(modelId="kept", modelInfo=mm.ModelInfo(type="t", path="p"))
    parsed = mm.RegisterModelRequest.FromString(request.SerializeToString() + inject("the-id"))
    assert parsed.modelId == "kept"
    assert (parsed.modelInfo.type, parsed.modelInfo.path) == ("t", "the-id")


@pytest.mark.parametrize("path", [[], [5], [2, 1], [99], [1, 1]])
def test_injection_paths_that_name_no_singular_string_are_refused(path: list[int]) -> None:
    # 5: inputs (repeated); 2: a string, not a message; 99: no such field.
    assert id_injector(path, v2.ModelInferRequest.DESCRIPTOR) is None


# -- a foreign runtime ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Seen:
    """What the fake runtime received."""

    model_names: list[str] = field(default_factory=list)
    headers: list[dict[str, str | bytes]] = field(default_factory=list)
    status_calls: int = 0


class _ForeignRuntime(spi_grpc.ModelRuntimeServicer):
    """Answers STARTING to its first runtimeStatus calls, like a model server
    still coming up; reports failures with bare codes."""

    def __init__(self, seen: _Seen, *, starting_replies: int) -> None:
        self.seen = seen
        self.starting_replies = starting_replies

    async def runtimeStatus(
        self, request: spi.RuntimeStatusRequest, context: grpc.aio.ServicerContext
    ) -> spi.RuntimeStatusResponse:
        self.seen.status_calls += 1
        if self.seen.status_calls <= self.starting_replies:
            return spi.RuntimeStatusResponse(status=spi.RuntimeStatusResponse.STARTING)
        return spi.RuntimeStatusResponse(
            status=spi.RuntimeStatusResponse.READY,
            capacityInBytes=7 * 2**20,
            maxLoadingConcurrency=3,
            modelLoadingTimeoutMs=300,
            defaultModelSizeInBytes=4096,
            runtimeVersion="foreign-1.2",
            limitModelConcurrency=True,
            methodInfos={INFER_METHOD: spi.RuntimeStatusResponse.MethodInfo(idInjectionPath=[1])},
        )

    async def loadModel(
        self, request: spi.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> spi.LoadModelResponse:
        if request.modelId == "refused":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown model type")
        if request.modelId == "broken":
            await context.abort(grpc.StatusCode.INTERNAL, "cannot parse the artifact")
        if request.modelId == "slow":
            await asyncio.sleep(5)
        return spi.LoadModelResponse(sizeInBytes=1234, maxConcurrency=2)

    async def unloadModel(
        self, request: spi.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> spi.UnloadModelResponse:
        return spi.UnloadModelResponse()

    async def predictModelSize(
        self, request: spi.PredictModelSizeRequest, context: grpc.aio.ServicerContext
    ) -> spi.PredictModelSizeResponse:
        if request.modelId == "slow":
            await asyncio.sleep(2)
        return spi.PredictModelSizeResponse(sizeInBytes=999)


def _infer_handler(seen: _Seen) -> grpc.GenericRpcHandler:
    async def infer(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = v2.ModelInferRequest.FromString(body)
        seen.model_names.append(request.model_name)
        seen.headers.append({key: value for key, value in context.invocation_metadata() or ()})
        if request.model_name == "gone":
            await context.abort(grpc.StatusCode.NOT_FOUND, "model gone is not loaded")
        if request.model_name == "crash":
            await context.abort(grpc.StatusCode.UNKNOWN, "predict raised ValueError")
        reply = v2.ModelInferResponse(model_name=request.model_name, id=request.id)
        encoded: bytes = reply.SerializeToString()
        return encoded

    return grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)},
    )


async def _serve(port: int, seen: _Seen, *, starting_replies: int = 0) -> grpc.aio.Server:
    server = grpc.aio.server()
    spi_grpc.add_ModelRuntimeServicer_to_server(
        _ForeignRuntime(seen, starting_replies=starting_replies), server
    )
    server.add_generic_rpc_handlers((_infer_handler(seen),))
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    return server


@dataclass
class _Foreign:
    port: int
    seen: _Seen
    server: grpc.aio.Server


@pytest_asyncio.fixture
async def foreign() -> AsyncIterator[_Foreign]:
    port = _free_port()
    seen = _Seen()
    holder = _Foreign(port, seen, await _serve(port, seen, starting_replies=2))
    yield holder
    await holder.server.stop(None)


async def test_start_waits_for_ready_and_reads_the_status(foreign: _Foreign) -> None:
    async with ExternalRuntime(address=f"127.0.0.1:{foreign.port}") as runtime:
        assert foreign.seen.status_calls == 3  # STARTING twice, then READY
        assert _state(runtime) is ExternalState.READY
        status = await runtime.status()
        assert (status.capacity_bytes, status.max_loading_concurrency) == (7 * 2**20, 3)
        assert (status.model_loading_timeout_ms, status.default_model_size_bytes) == (300, 4096)
        assert status.runtime_version == "foreign-1.2"
        assert runtime.limit_model_concurrency
        assert runtime.method_infos == {INFER_METHOD: (1,)}
        result = await runtime.load(ModelSpec("m1", "sklearn", "/models/m1"))
        assert (result.size_bytes, result.max_concurrency) == (1234, 2)
        assert await runtime.predict_size(ModelSpec("m2", "sklearn", "/models/m2")) == 999
    assert _state(runtime) is ExternalState.STOPPED


async def test_model_id_goes_in_the_header_and_the_body(foreign: _Foreign) -> None:
    async with ExternalRuntime(address=f"127.0.0.1:{foreign.port}") as runtime:
        body = v2.ModelInferRequest(model_name="vmodel", id="r1").SerializeToString()
        reply = v2.ModelInferResponse.FromString(await runtime.infer_grpc("m__isvc-01", body))
        assert (reply.model_name, reply.id) == ("m__isvc-01", "r1")
        assert foreign.seen.headers[-1]["mm-model-id"] == "m__isvc-01"
        await runtime.infer_grpc("mödel", body)
        assert foreign.seen.model_names[-1] == "mödel"
        assert foreign.seen.headers[-1]["mm-model-id-bin"] == "mödel".encode()


async def test_bare_codes_become_the_operations_errors(foreign: _Foreign) -> None:
    async with ExternalRuntime(address=f"127.0.0.1:{foreign.port}") as runtime:
        with pytest.raises(errors.LoadNotAttemptedError, match="unknown model type"):
            await runtime.load(ModelSpec("refused", "x", "/x"))
        with pytest.raises(errors.ModelLoadError, match="cannot parse") as broken:
            await runtime.load(ModelSpec("broken", "x", "/x"))
        assert type(broken.value) is errors.ModelLoadError
        # The runtime's own modelLoadingTimeoutMs (300) bounds the load.
        with pytest.raises(errors.LoadTimeoutError, match=r"0\.3 s"):
            await runtime.load(ModelSpec("slow", "x", "/x"))
        # predictModelSize must answer within ModelMesh's 500 ms.
        with pytest.raises(errors.UnavailableError, match=r"0\.5 s"):
            await runtime.predict_size(ModelSpec("slow", "x", "/x"))
        with pytest.raises(errors.ModelNotFoundError, match="gone"):
            await runtime.infer_grpc("gone", b"")
        with pytest.raises(errors.InferenceError, match="ValueError"):
            await runtime.infer_grpc("crash", b"")


async def test_a_runtime_that_never_answers_fails_the_start() -> None:
    runtime = ExternalRuntime(address=f"127.0.0.1:{_free_port()}", start_timeout_s=0.3)
    with pytest.raises(errors.UnavailableError, match=r"did not answer READY within 0\.3 s"):
        await runtime.start()
    assert _state(runtime) is ExternalState.STOPPED
    with pytest.raises(errors.UnavailableError, match="stopped"):
        await runtime.status()


async def test_a_lost_runtime_is_reported_and_found_again(foreign: _Foreign) -> None:
    lost, back = asyncio.Event(), asyncio.Event()

    async def on_lost() -> None:
        lost.set()

    async def on_reconnect() -> None:
        back.set()

    runtime = ExternalRuntime(
        address=f"127.0.0.1:{foreign.port}",
        on_lost=on_lost,
        on_reconnect=on_reconnect,
        reconnect_backoff_max_s=0.2,
    )
    async with runtime:
        await foreign.server.stop(None)
        await asyncio.wait_for(lost.wait(), 10)
        assert _state(runtime) is ExternalState.LOST and runtime.losses == 1
        assert (await runtime.status()).state.value == "FAILING"
        with pytest.raises(errors.UnavailableError, match="lost"):
            await runtime.load(ModelSpec("m1", "sklearn", "/models/m1"))
        assert not back.is_set()

        foreign.server = await _serve(foreign.port, foreign.seen)
        await asyncio.wait_for(back.wait(), 10)
        assert _state(runtime) is ExternalState.READY
        assert (await runtime.status()).state.value == "READY"
        assert (await runtime.load(ModelSpec("m1", "sklearn", "/m1"))).size_bytes == 1234
