"""The MLServer adapter: its pure parts (directory names, model settings,
sizes, refusals, the repository request), and its SPI driven by an
ExternalRuntime against a fake MLServer (an in-process gRPC server that
answers the calls the adapter makes the way MLServer 1.7 does)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio

from meshserve import errors
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.runtime import (
    ExternalRuntime,
    ExternalState,
    ListenAddress,
    MLServerAdapter,
    MLServerAdapterConfig,
    ModelSpec,
    mlserver_address,
)
from meshserve.runtime._mlserver_adapter import AdapterState, mlserver_env
from meshserve.runtime._mlserver_client import repository_request
from meshserve.runtime._mlserver_layout import (
    MODEL_SETTINGS,
    model_dir_name,
    read_model_name,
    remove_model_dir,
    resolve_model,
    size_estimate,
    write_model_dir,
)

SKLEARN = "mlserver_sklearn.SKLearnModel"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def joblib_file(tmp_path: pathlib.Path) -> pathlib.Path:
    # Never unpickled here: only found, linked and sized.
    path = tmp_path / "artifacts" / "model.joblib"
    path.parent.mkdir()
    path.write_bytes(b"x" * 1000)
    return path


# -- directory names ---------------------------------------------------------------

TRICKY_IDS = [
    "iris",
    "ns/iris__isvc-0123456789",
    "ns%2Firis__isvc-0123456789",
    ".",
    "..",
    ".hidden",
    "a b",
    "ünï/cödé",
    "a+b",
    "x" * 300,
    "x" * 299 + "y",
]


def test_plain_ids_keep_their_name() -> None:
    assert model_dir_name("iris-v1.2_b") == "iris-v1.2_b"


@pytest.mark.parametrize("model_id", TRICKY_IDS)
def test_a_dir_name_is_one_visible_path_component(model_id: str) -> None:
    name = model_dir_name(model_id)
    assert "/" not in name
    assert not name.startswith(".")  # MLServer's search skips hidden directories
    assert len(name.encode()) <= 200
    assert name not in ("", ".", "..")


def test_distinct_ids_get_distinct_dirs() -> None:
    names = [model_dir_name(model_id) for model_id in TRICKY_IDS]
    assert len(set(names)) == len(names)
    # A long id keeps a readable start.
    assert model_dir_name("x" * 300).startswith("x" * 100)


def test_an_empty_id_is_refused() -> None:
    with pytest.raises(errors.UnsupportedModelError, match="empty"):
        model_dir_name("")


# -- what MLServer is asked to load ------------------------------------------------


def test_a_joblib_file_is_an_sklearn_model(joblib_file: pathlib.Path) -> None:
    model = resolve_model(ModelSpec("m", "sklearn", str(joblib_file)))
    assert (model.implementation, model.artifact, model.disk_bytes) == (SKLEARN, joblib_file, 1000)


def test_the_artifact_is_found_in_a_directory(joblib_file: pathlib.Path) -> None:
    (joblib_file.parent / "README.md").write_text("about the model")
    model = resolve_model(ModelSpec("m", "mt:sklearn:1", str(joblib_file.parent)))
    assert model.artifact == joblib_file


def test_the_model_keys_disk_size_wins(joblib_file: pathlib.Path) -> None:
    key = json.dumps({"model_type": {"name": "sklearn"}, "disk_size_bytes": 4000})
    assert resolve_model(ModelSpec("m", "", str(joblib_file), key)).disk_bytes == 4000


def test_other_model_types_are_refused_naming_the_supported_ones(
    joblib_file: pathlib.Path,
) -> None:
    with pytest.raises(errors.UnsupportedModelError, match="supported types: sklearn"):
        resolve_model(ModelSpec("m", "xgboost", str(joblib_file)))


def test_skops_files_are_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "m.skops").write_bytes(b"zip")
    with pytest.raises(errors.UnsupportedModelError, match=r"joblib/pickle files"):
        resolve_model(ModelSpec("m", "sklearn", str(tmp_path / "m.skops")))


def test_a_missing_artifact_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.UnsupportedModelError, match="does not exist"):
        resolve_model(ModelSpec("m", "sklearn", str(tmp_path / "nothing.joblib")))


@pytest.mark.parametrize(("disk_bytes", "expected"), [(1000, 1250), (4, 5), (0, 1), (None, 777)])
def test_size_is_disk_times_the_multiplier(disk_bytes: int | None, expected: int) -> None:
    assert size_estimate(disk_bytes=disk_bytes, multiplier=1.25, default_bytes=777) == expected


# -- the model's directory --------------------------------------------------------------


def test_the_settings_name_the_model_by_its_id(
    tmp_path: pathlib.Path, joblib_file: pathlib.Path
) -> None:
    model = resolve_model(ModelSpec("ns/iris__isvc-01", "sklearn", str(joblib_file)))
    directory = write_model_dir(tmp_path / "models", model)
    assert directory.parent == tmp_path / "models"
    assert directory.name == model_dir_name("ns/iris__isvc-01")
    settings = json.loads((directory / MODEL_SETTINGS).read_text())
    assert settings == {
        "name": "ns/iris__isvc-01",
        "implementation": SKLEARN,
        "parameters": {"uri": "./model.joblib"},
    }
    # The uri is relative to the settings file and leads to the artifact.
    assert (directory / settings["parameters"]["uri"]).resolve() == joblib_file
    assert read_model_name(directory) == "ns/iris__isvc-01"
    assert sorted(p.name for p in directory.iterdir()) == [MODEL_SETTINGS, "model.joblib"]


def test_writing_again_replaces_and_removing_keeps_the_artifact(
    tmp_path: pathlib.Path, joblib_file: pathlib.Path
) -> None:
    other = joblib_file.with_name("other.pkl")
    other.write_bytes(b"y")
    write_model_dir(tmp_path / "models", resolve_model(ModelSpec("m", "sklearn", str(joblib_file))))
    directory = write_model_dir(
        tmp_path / "models", resolve_model(ModelSpec("m", "sklearn", str(other)))
    )
    assert sorted(p.name for p in directory.iterdir()) == [MODEL_SETTINGS, "model.pkl"]
    remove_model_dir(directory)
    assert not directory.exists()
    assert joblib_file.exists() and other.exists()


def test_unreadable_settings_have_no_name(tmp_path: pathlib.Path) -> None:
    assert read_model_name(tmp_path) is None
    (tmp_path / MODEL_SETTINGS).write_text("[1, 2]")
    assert read_model_name(tmp_path) is None


# -- the repository request --------------------------------------------------------


@pytest.mark.parametrize("name", ["iris", "ns/ünï__isvc-01", "m" * 300])
def test_the_repository_request_carries_the_name_in_field_2(name: str) -> None:
    # ModelMetadataRequest's field 2 (version) is a string too: a real
    # protobuf parser reads the hand-encoded field back.
    parsed = v2.ModelMetadataRequest.FromString(repository_request(name))
    assert (parsed.name, parsed.version) == ("", name)


# -- configuration --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.0.0.1:8001", "never on a network interface"),
        ("unix:/run/mlserver.sock", "127.0.0.1:PORT"),
        ("127.0.0.1:0", "port other than 0"),
    ],
)
def test_mlserver_addresses_are_loopback_ports(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        mlserver_address(text, what="--mlserver-grpc")


def _config(tmp_path: pathlib.Path) -> MLServerAdapterConfig:
    return MLServerAdapterConfig(
        listen=ListenAddress.parse(f"unix:{tmp_path}/adapter.sock"),
        mlserver_grpc=ListenAddress.parse("127.0.0.1:9001"),
        mlserver_http=ListenAddress.parse("127.0.0.1:9000"),
        models_dir=tmp_path / "models",
        mlserver_argv=("mlserver", "start", str(tmp_path / "models")),
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"mlserver_http": None}, "--mlserver-http"),
        ({"mlserver_http": ListenAddress.parse("[::1]:9000")}, "one host"),
        ({"mlserver_http": ListenAddress.parse("127.0.0.1:9001")}, "must differ"),
        ({"mlserver_argv": ("mlserver", "start", "/elsewhere")}, "never find"),
        ({"size_multiplier": 0.0}, "multiplier"),
    ],
)
def test_inconsistent_configs_are_refused(
    tmp_path: pathlib.Path, changes: dict[str, Any], reason: str
) -> None:
    config = _config(tmp_path)
    with pytest.raises(ValueError, match=reason):
        dataclasses.replace(config, **changes)


def test_mlserver_gets_its_ports_and_no_startup_loads(tmp_path: pathlib.Path) -> None:
    config = _config(tmp_path)
    env = mlserver_env(config, {"MLSERVER_DEBUG": "true", "MLSERVER_GRPC_PORT": "1"})
    assert env["MLSERVER_HOST"] == "127.0.0.1"
    assert (env["MLSERVER_GRPC_PORT"], env["MLSERVER_HTTP_PORT"]) == ("9001", "9000")
    assert env["MLSERVER_MODELS_DIR"] == str(tmp_path / "models")
    assert env["MLSERVER_LOAD_MODELS_AT_STARTUP"] == "false"
    assert env["MLSERVER_PARALLEL_WORKERS"] == "0"
    assert env["MLSERVER_METRICS_ENDPOINT"] == ""
    assert env["MLSERVER_DEBUG"] == "true"  # the adapter's environment may turn logs on
    assert mlserver_env(config, {})["MLSERVER_DEBUG"] == "false"


def test_the_data_address_follows_the_spi_address_rules() -> None:
    runtime = ExternalRuntime(address="unix:/run/a.sock", data_address="127.0.0.1:8001")
    assert (str(runtime.address), str(runtime.data_address)) == (
        "unix:/run/a.sock",
        "127.0.0.1:8001",
    )
    # Unset, inference goes to the SPI's address.
    assert ExternalRuntime(address="127.0.0.1:9").data_address == ListenAddress.parse("127.0.0.1:9")
    for refused in ("10.0.0.1:8001", "127.0.0.1:0"):
        with pytest.raises(ValueError):
            ExternalRuntime(address="unix:/run/a.sock", data_address=refused)


# -- the SPI against a fake MLServer ---------------------------------------------------


@dataclass
class _FakeMLServer:
    """MLServer's answers: loads find the name among the repository's
    settings files (NOT_FOUND otherwise), unknown unloads are NOT_FOUND,
    load failures are INTERNAL with the exception's text."""

    models_dir: pathlib.Path
    ready: bool = True
    loaded: set[str] = field(default_factory=set)
    failures: dict[str, str] = field(default_factory=dict)
    infer_names: list[str] = field(default_factory=list)
    metadata_names: list[str] = field(default_factory=list)

    def _names_on_disk(self) -> set[str]:
        return {
            str(json.loads(p.read_text())["name"])
            for p in self.models_dir.glob(f"**/{MODEL_SETTINGS}")
        }

    async def server_ready(
        self, request: v2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerReadyResponse:
        return v2.ServerReadyResponse(ready=self.ready)

    async def server_metadata(
        self, request: v2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ServerMetadataResponse:
        return v2.ServerMetadataResponse(name="mlserver", version="1.7.1")

    async def load(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        name = v2.ModelMetadataRequest.FromString(body).version  # field 2, see above
        if name not in self._names_on_disk():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Model {name} not found")
        if name in self.failures:
            await context.abort(grpc.StatusCode.INTERNAL, self.failures[name])
        self.loaded.add(name)
        return b""

    async def unload(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        name = v2.ModelMetadataRequest.FromString(body).version
        if name not in self.loaded:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Model {name} not found")
        self.loaded.discard(name)
        return b""

    async def infer(
        self, request: v2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelInferResponse:
        self.infer_names.append(request.model_name)
        if request.model_name not in self.loaded:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"Model {request.model_name} not found")
        return v2.ModelInferResponse(model_name=request.model_name, id=request.id)

    async def metadata(
        self, request: v2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> v2.ModelMetadataResponse:
        self.metadata_names.append(request.name)
        return v2.ModelMetadataResponse(name=request.name, platform="mlserver")

    def handler(self) -> grpc.GenericRpcHandler:
        def typed(fn: Any, request: Any, response: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request.FromString,
                response_serializer=response.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService",
            {
                "ServerReady": typed(
                    self.server_ready, v2.ServerReadyRequest, v2.ServerReadyResponse
                ),
                "ServerMetadata": typed(
                    self.server_metadata, v2.ServerMetadataRequest, v2.ServerMetadataResponse
                ),
                "ModelInfer": typed(self.infer, v2.ModelInferRequest, v2.ModelInferResponse),
                "ModelMetadata": typed(
                    self.metadata, v2.ModelMetadataRequest, v2.ModelMetadataResponse
                ),
                "RepositoryModelLoad": grpc.unary_unary_rpc_method_handler(self.load),
                "RepositoryModelUnload": grpc.unary_unary_rpc_method_handler(self.unload),
            },
        )


async def _serve_fake(fake: _FakeMLServer, port: int) -> grpc.aio.Server:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((fake.handler(),))
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    return server


@dataclass
class _Setup:
    fake: _FakeMLServer
    port: int
    server: grpc.aio.Server
    adapter: MLServerAdapter
    models_dir: pathlib.Path


@pytest.fixture
def short_socket_dir() -> Iterator[pathlib.Path]:
    # pytest's tmp_path can be longer than a Unix socket path may be.
    with tempfile.TemporaryDirectory(prefix="msa-") as name:
        yield pathlib.Path(name)


@pytest_asyncio.fixture
async def setup(tmp_path: pathlib.Path, short_socket_dir: pathlib.Path) -> AsyncIterator[_Setup]:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    port = _free_port()
    fake = _FakeMLServer(models_dir=models_dir)
    server = await _serve_fake(fake, port)
    config = MLServerAdapterConfig(
        listen=ListenAddress.parse(f"unix:{short_socket_dir}/adapter.sock"),
        mlserver_grpc=ListenAddress.parse(f"127.0.0.1:{port}"),
        models_dir=models_dir,
        capacity_bytes=5 * 2**20,
        model_loading_timeout_ms=2000,
    )
    holder = _Setup(fake, port, server, MLServerAdapter(config=config), models_dir)
    async with holder.adapter:
        yield holder
    await holder.server.stop(None)


def _runtime(
    setup: _Setup,
    *,
    on_lost: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> ExternalRuntime:
    return ExternalRuntime(
        address=setup.adapter.address,
        data_address=f"127.0.0.1:{setup.port}",
        start_timeout_s=10,
        reconnect_backoff_max_s=0.2,
        on_lost=on_lost,
        on_reconnect=on_reconnect,
    )


async def _until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


async def test_the_status_waits_for_mlserver_and_asks_for_the_id(setup: _Setup) -> None:
    setup.fake.ready = False
    runtime = _runtime(setup)
    starting = asyncio.create_task(runtime.start())
    await asyncio.sleep(0.5)
    assert not starting.done()  # STARTING while MLServer is not ready
    setup.fake.ready = True
    await asyncio.wait_for(starting, 10)
    try:
        status = await runtime.status()
        assert status.capacity_bytes == 5 * 2**20
        assert (status.model_loading_timeout_ms, status.default_model_size_bytes) == (2000, 10**6)
        assert status.runtime_version == "mlserver/1.7.1"
        assert not runtime.limit_model_concurrency
        assert runtime.method_infos == {
            "inference.GRPCInferenceService/ModelInfer": (1,),
            "inference.GRPCInferenceService/ModelMetadata": (1,),
        }
    finally:
        await runtime.stop()


async def test_a_model_loads_and_inference_reaches_mlserver_by_its_id(
    setup: _Setup, joblib_file: pathlib.Path
) -> None:
    async with _runtime(setup) as runtime:
        spec = ModelSpec("ns/lr__isvc-01", "sklearn", str(joblib_file))
        assert await runtime.predict_size(spec) == 1250
        result = await runtime.load(spec)
        assert (result.size_bytes, result.max_concurrency) == (1250, 0)
        assert setup.fake.loaded == {"ns/lr__isvc-01"}
        assert await runtime.model_size("ns/lr__isvc-01") == 1250
        # The body names a vmodel; MLServer sees the concrete id.
        body = v2.ModelInferRequest(model_name="vmodel", id="r1").SerializeToString()
        reply = v2.ModelInferResponse.FromString(await runtime.infer_grpc("ns/lr__isvc-01", body))
        assert (reply.model_name, reply.id) == ("ns/lr__isvc-01", "r1")
        assert setup.fake.infer_names == ["ns/lr__isvc-01"]
        metadata = await runtime.metadata("ns/lr__isvc-01")
        assert (metadata.name, metadata.platform) == ("ns/lr__isvc-01", "mlserver")


async def test_mlservers_load_failure_is_a_load_failure_with_its_reason(
    setup: _Setup, joblib_file: pathlib.Path
) -> None:
    setup.fake.failures = {"broken": "invalid load key, 'x'.", "silent": ""}
    async with _runtime(setup) as runtime:
        with pytest.raises(errors.ModelLoadError, match="invalid load key") as failed:
            await runtime.load(ModelSpec("broken", "sklearn", str(joblib_file)))
        assert not isinstance(failed.value, errors.LoadNotAttemptedError)
        with pytest.raises(errors.ModelLoadError, match="gave no reason"):
            await runtime.load(ModelSpec("silent", "sklearn", str(joblib_file)))
        # Nothing of either is left in MLServer's repository.
        assert list(setup.models_dir.iterdir()) == []
        with pytest.raises(errors.UnsupportedModelError, match="supported types: sklearn"):
            await runtime.load(ModelSpec("xgb", "xgboost", str(joblib_file)))
        with pytest.raises(errors.ModelNotFoundError):
            await runtime.model_size("broken")


async def test_unload_removes_the_model_and_unknown_ids_are_no_error(
    setup: _Setup, joblib_file: pathlib.Path
) -> None:
    async with _runtime(setup) as runtime:
        await runtime.load(ModelSpec("m", "sklearn", str(joblib_file)))
        await runtime.unload("never-loaded")
        await runtime.unload("m")
        assert setup.fake.loaded == set()
        assert list(setup.models_dir.iterdir()) == []
        with pytest.raises(errors.ModelNotFoundError):
            await runtime.infer_grpc("m", b"")


async def test_runtime_status_unloads_what_was_loaded_before(
    setup: _Setup, joblib_file: pathlib.Path
) -> None:
    async with _runtime(setup) as runtime:
        await runtime.load(ModelSpec("a", "sklearn", str(joblib_file)))
        await runtime.load(ModelSpec("b/c", "sklearn", str(joblib_file)))
    # A second instance connecting finds nothing loaded.
    setup.fake.loaded.add("left-over")  # not ours: not in the models dir, kept
    async with _runtime(setup):
        assert setup.fake.loaded == {"left-over"}
        assert list(setup.models_dir.iterdir()) == []


async def test_losing_mlserver_makes_the_instance_reconnect(
    setup: _Setup, joblib_file: pathlib.Path
) -> None:
    events: list[str] = []

    async def lost() -> None:
        events.append("lost")

    async def back() -> None:
        events.append("back")

    async with _runtime(setup, on_lost=lost, on_reconnect=back) as runtime:
        await runtime.load(ModelSpec("m", "sklearn", str(joblib_file)))
        await setup.server.stop(None)
        await _until(lambda: events == ["lost"], "the instance to see the loss")
        assert setup.adapter.mlserver_losses == 1
        # Until MLServer is back the adapter answers STARTING.
        await asyncio.sleep(0.5)
        assert runtime.state is ExternalState.LOST
        setup.fake.loaded.clear()  # a restarted MLServer holds nothing
        setup.server = await _serve_fake(setup.fake, setup.port)
        await _until(lambda: events == ["lost", "back"], "the instance to reconnect")
        assert setup.adapter.state is AdapterState.READY
        assert list(setup.models_dir.iterdir()) == []
        await runtime.load(ModelSpec("m", "sklearn", str(joblib_file)))
        assert setup.fake.loaded == {"m"}
