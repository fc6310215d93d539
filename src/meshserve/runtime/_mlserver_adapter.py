"""The MLServer adapter: ModelMesh's runtime SPI in front of a real MLServer.

As ModelMesh Serving's built-in adapter (``serverType: mlserver``), this is
a process of its own that serves ``mmesh.ModelRuntime`` to the instance (on
a Unix socket of mode 0600 or a loopback port) and manages MLServer through
its model repository extension:

- loadModel writes ``<models-dir>/<dir from the model id>/model-settings.json``
  naming the model by its id, then asks MLServer to load that name;
- unloadModel asks MLServer to unload it and removes the directory;
- runtimeStatus answers STARTING until MLServer is ready, then unloads and
  removes whatever the models dir holds (the SPI's contract: a runtime that
  answers READY holds nothing) and asks, in ``methodInfos``, for the model
  id in ModelInfer's and ModelMetadata's field 1 (``model_name``/``name``).

Inference does not pass through here: the instance sends it straight to
MLServer's gRPC port (its ``runtime.externalDataAddress``), as ModelMesh
sends it to the ServingRuntime's grpcDataEndpoint.

With a command line (``mlserver start DIR``), the adapter runs MLServer as a
supervised child on the given loopback ports; without one it drives an
MLServer someone else runs. Either way, when the connection to MLServer
drops, its models are gone: the adapter closes its own SPI server's
connections and listens again, so the instance takes the runtime as lost,
polls runtimeStatus (STARTING until MLServer is back) and reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import pathlib
from collections.abc import Coroutine, Mapping
from typing import Any

import grpc
import grpc.aio

from meshserve import errors
from meshserve._lifecycle import Service
from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol._pb import model_runtime_pb2_grpc as spi_grpc
from meshserve.protocol.status import reports_errors
from meshserve.runtime._address import ListenAddress
from meshserve.runtime._external import INFER_METHOD
from meshserve.runtime._mlserver_client import MLServerClient
from meshserve.runtime._mlserver_layout import (
    DEFAULT_SIZE_MULTIPLIER,
    model_dir_name,
    read_model_name,
    remove_model_dir,
    resolve_model,
    size_estimate,
    write_model_dir,
)
from meshserve.runtime._records import ModelSpec
from meshserve.runtime._server import bind_and_start
from meshserve.runtime._spi import spec_from_request
from meshserve.runtime._supervised import SupervisedCommand

__all__ = [
    "METADATA_METHOD",
    "AdapterState",
    "MLServerAdapter",
    "MLServerAdapterConfig",
    "mlserver_address",
    "mlserver_env",
]

log = logging.getLogger(__name__)

METADATA_METHOD = "inference.GRPCInferenceService/ModelMetadata"

_GIB = 1024**3
_MAX_GRPC_MESSAGE = 2**31 - 1
_READY_POLL_S = 0.2
_STOP_PURGE_S = 5.0
_LOST_RETRY_S = 1.0


def mlserver_address(text: str, *, what: str = "MLServer address") -> ListenAddress:
    """A loopback ``HOST:PORT`` with a real port (MLServer listens on TCP
    only); ValueError otherwise, naming ``what``."""
    try:
        address = ListenAddress.parse(text)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if address.is_unix or not address.port:
        raise ValueError(f"{what} {text!r}: expected 127.0.0.1:PORT with a port other than 0")
    return address


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MLServerAdapterConfig:
    """What the adapter serves and which MLServer it drives."""

    listen: ListenAddress
    """Where the SPI is served: ``unix:/PATH`` (mode 0600) or a loopback port."""
    mlserver_grpc: ListenAddress
    """MLServer's gRPC port (loopback): repository calls here, and the
    instance's inference."""
    models_dir: pathlib.Path
    """MLServer's model repository root; the adapter owns what is in it."""
    mlserver_http: ListenAddress | None = None
    """MLServer's REST port; needed only to start MLServer (it always serves one)."""
    mlserver_argv: tuple[str, ...] = ()
    """The command that runs MLServer (``mlserver start <models_dir>``);
    empty: someone else runs it."""
    capacity_bytes: int = _GIB
    """Memory offered to models (ModelMesh: the container's memory request
    minus memBufferBytes)."""
    default_model_size_bytes: int = 1_000_000
    """Size assumed when the size on disk is unknown (ModelMesh's default)."""
    size_multiplier: float = DEFAULT_SIZE_MULTIPLIER
    """Bytes in memory per byte on disk (ModelMesh's adapter: 1.25)."""
    max_loading_concurrency: int = 1
    model_loading_timeout_ms: int = 30_000
    """ModelMesh's MLServer adapter's default (LOADTIME_TIMEOUT)."""
    call_timeout_s: float = 30.0
    """Deadline of an unload sent to MLServer."""
    stop_grace_s: float = 5.0
    """SIGTERM-to-SIGKILL grace when stopping MLServer."""

    def __post_init__(self) -> None:
        for name in ("mlserver_grpc", "mlserver_http"):
            address = getattr(self, name)
            if address is not None and (address.is_unix or not address.port):
                raise ValueError(f"{name}: MLServer listens on a loopback HOST:PORT")
        if self.capacity_bytes <= 0 or self.default_model_size_bytes <= 0:
            raise ValueError("capacity and default model size must be positive")
        if self.size_multiplier <= 0:
            raise ValueError("the size multiplier must be positive")
        if self.max_loading_concurrency < 1 or self.model_loading_timeout_ms < 1:
            raise ValueError("loading concurrency and timeout must be positive")
        if not self.mlserver_argv:
            return
        if self.mlserver_http is None:
            raise ValueError("starting MLServer needs its REST address as well (--mlserver-http)")
        if self.mlserver_http.host != self.mlserver_grpc.host:
            raise ValueError(
                "MLServer listens on one host for gRPC and REST: "
                f"{self.mlserver_grpc.host} and {self.mlserver_http.host} differ"
            )
        if self.mlserver_http.port == self.mlserver_grpc.port:
            raise ValueError("MLServer's gRPC and REST ports must differ")
        argv = self.mlserver_argv
        serves = pathlib.Path(argv[2]) if len(argv) >= 3 and argv[1] == "start" else None
        if serves is not None and serves.resolve() != self.models_dir.resolve():
            raise ValueError(
                f"'{' '.join(argv[:3])}' serves {serves}, not the models dir "
                f"{self.models_dir}: MLServer would never find the adapter's models"
            )


def mlserver_env(config: MLServerAdapterConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment entries MLServer is started with (``environ`` is the
    adapter's, which may override the quiet defaults only)."""
    assert config.mlserver_http is not None
    defaults = {
        # MLServer's default logs every call and access.
        "MLSERVER_DEBUG": "false",
    }
    required = {
        "MLSERVER_HOST": config.mlserver_grpc.host or "127.0.0.1",
        "MLSERVER_GRPC_PORT": str(config.mlserver_grpc.port),
        "MLSERVER_HTTP_PORT": str(config.mlserver_http.port),
        "MLSERVER_MODELS_DIR": str(config.models_dir),
        "MLSERVER_MODEL_REPOSITORY_ROOT": str(config.models_dir),
        # Models load when the instance asks, never on their own.
        "MLSERVER_LOAD_MODELS_AT_STARTUP": "false",
        # One process: workers hold copies of every model, and with uvloop
        # 0.22+ MLServer 1.7's workers load nothing at all.
        "MLSERVER_PARALLEL_WORKERS": "0",
        # Off: its fixed port would clash between instances on one machine.
        "MLSERVER_METRICS_ENDPOINT": "",
        # The instance enforces grpcMaxMessageSizeBytes; MLServer's 4 MiB
        # default must not refuse what it accepted.
        "MLSERVER_GRPC_MAX_MESSAGE_LENGTH": str(_MAX_GRPC_MESSAGE),
    }
    return {**defaults, **{k: v for k, v in environ.items() if k in defaults}, **required}


class AdapterState(enum.Enum):
    STOPPED = "stopped"
    WAITING = "waiting"
    """Serving the SPI, answering STARTING until MLServer is ready."""
    READY = "ready"
    STOPPING = "stopping"


class _Servicer(spi_grpc.ModelRuntimeServicer):
    def __init__(self, adapter: MLServerAdapter) -> None:
        self._adapter = adapter

    @reports_errors
    async def loadModel(
        self, request: spi.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> spi.LoadModelResponse:
        size = await self._adapter.load(spec_from_request(request))
        # 0: MLServer takes any number of concurrent requests per model.
        return spi.LoadModelResponse(sizeInBytes=size, maxConcurrency=0)

    @reports_errors
    async def unloadModel(
        self, request: spi.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> spi.UnloadModelResponse:
        await self._adapter.unload(request.modelId)
        return spi.UnloadModelResponse()

    @reports_errors
    async def predictModelSize(
        self, request: spi.PredictModelSizeRequest, context: grpc.aio.ServicerContext
    ) -> spi.PredictModelSizeResponse:
        size = self._adapter.predict_size(spec_from_request(request))
        return spi.PredictModelSizeResponse(sizeInBytes=size)

    @reports_errors
    async def modelSize(
        self, request: spi.ModelSizeRequest, context: grpc.aio.ServicerContext
    ) -> spi.ModelSizeResponse:
        return spi.ModelSizeResponse(sizeInBytes=self._adapter.model_size(request.modelId))

    @reports_errors
    async def runtimeStatus(
        self, request: spi.RuntimeStatusRequest, context: grpc.aio.ServicerContext
    ) -> spi.RuntimeStatusResponse:
        return await self._adapter.runtime_status()


class MLServerAdapter(Service):
    """Serves the SPI for one MLServer; see the module docstring.

    ``async with MLServerAdapter(config=...) as adapter`` starts it (and
    MLServer, when the config has a command); ``adapter.address`` is then
    the SPI's bound address.
    """

    def __init__(self, *, config: MLServerAdapterConfig) -> None:
        self.config = config
        self.address = str(config.listen)
        self.state = AdapterState.STOPPED
        self.mlserver_losses = 0
        """How many times the connection to MLServer dropped."""
        self.mlserver: SupervisedCommand | None = None
        """MLServer's process, when the adapter runs it."""
        self._client = MLServerClient(address=config.mlserver_grpc)
        self._server: grpc.aio.Server | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()
        self._models: dict[str, int] = {}
        self._version = ""

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        self.config.models_dir.mkdir(parents=True, exist_ok=True)
        await self._client.open()
        try:
            if self.config.mlserver_argv:
                self.mlserver = SupervisedCommand(
                    name="MLServer",
                    argv=self.config.mlserver_argv,
                    env=mlserver_env(self.config, os.environ),
                    stop_grace_s=self.config.stop_grace_s,
                )
                await self.mlserver.start()
            await self._serve(self.config.listen)
        except BaseException:
            await self.stop()
            raise
        self.state = AdapterState.WAITING
        self._watcher = asyncio.create_task(self._watch(), name="mlserver-watch")
        log.info("MLServer adapter listening on %s", self.address)

    async def stop(self) -> None:
        external_ready = self.state is AdapterState.READY and self.mlserver is None
        self.state = AdapterState.STOPPING
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._server is not None:
            await self._server.stop(1.0)
            self._server = None
        if external_ready:
            # MLServer outlives us: leave it without our models.
            with contextlib.suppress(TimeoutError, errors.MeshServeError):
                async with asyncio.timeout(_STOP_PURGE_S):
                    await self._purge()
        if self.mlserver is not None:
            await self.mlserver.stop()
        for task in list(self._cleanups):
            task.cancel()
        await asyncio.gather(*self._cleanups, return_exceptions=True)
        await self._client.close()
        self._clear_models_dir()
        if self.config.listen.unix_path is not None:
            pathlib.Path(self.config.listen.unix_path).unlink(missing_ok=True)
        self.state = AdapterState.STOPPED

    async def _serve(self, listen: ListenAddress) -> None:
        server = grpc.aio.server()
        spi_grpc.add_ModelRuntimeServicer_to_server(_Servicer(self), server)
        self.address = await bind_and_start(server, listen)
        self._server = server

    async def _watch(self) -> None:
        while True:
            try:
                await self._until_mlserver_ready()
                await self._client.wait_lost()
                await self._mlserver_lost()
            except Exception:
                # Never leave MLServer unwatched: a bug here must not turn a
                # later loss into silence.
                log.exception("watching MLServer failed; watching again")
                await asyncio.sleep(_LOST_RETRY_S)

    async def _until_mlserver_ready(self) -> None:
        while not await self._client.ready():
            await asyncio.sleep(_READY_POLL_S)
        self._version = await self._client.version()
        self.state = AdapterState.READY
        log.info("MLServer at %s is ready (%s)", self.config.mlserver_grpc, self._version)

    async def _mlserver_lost(self) -> None:
        self.state = AdapterState.WAITING
        self.mlserver_losses += 1
        self._models.clear()
        log.error(
            "lost MLServer at %s; its models are gone: dropping the SPI connections so the "
            "instance reloads them once MLServer is back",
            self.config.mlserver_grpc,
        )
        old, self._server = self._server, None
        if old is not None:
            await old.stop(0)
        # The bound address: a port picked at start stays the same.
        await self._serve(ListenAddress.parse(self.address))

    # -- the SPI ---------------------------------------------------------

    async def runtime_status(self) -> spi.RuntimeStatusResponse:
        starting = spi.RuntimeStatusResponse(status=spi.RuntimeStatusResponse.STARTING)
        if self.state is not AdapterState.READY or not await self._client.ready():
            return starting
        try:
            purged = await self._purge()
        except errors.MeshServeError as exc:
            log.warning("runtimeStatus: could not clear MLServer's models: %s", exc)
            return starting
        if purged:
            log.warning("runtimeStatus: unloaded %d models loaded before this call", purged)
        path = [1]  # ModelInferRequest.model_name, ModelMetadataRequest.name
        return spi.RuntimeStatusResponse(
            status=spi.RuntimeStatusResponse.READY,
            capacityInBytes=self.config.capacity_bytes,
            maxLoadingConcurrency=self.config.max_loading_concurrency,
            modelLoadingTimeoutMs=self.config.model_loading_timeout_ms,
            defaultModelSizeInBytes=self.config.default_model_size_bytes,
            runtimeVersion=self._version,
            limitModelConcurrency=False,
            methodInfos={
                INFER_METHOD: spi.RuntimeStatusResponse.MethodInfo(idInjectionPath=path),
                METADATA_METHOD: spi.RuntimeStatusResponse.MethodInfo(idInjectionPath=path),
            },
        )

    def _size(self, disk_bytes: int | None) -> int:
        return size_estimate(
            disk_bytes=disk_bytes,
            multiplier=self.config.size_multiplier,
            default_bytes=self.config.default_model_size_bytes,
        )

    def predict_size(self, spec: ModelSpec) -> int:
        return self._size(resolve_model(spec).disk_bytes)

    def model_size(self, model_id: str) -> int:
        try:
            return self._models[model_id]
        except KeyError:
            raise errors.ModelNotFoundError(f"model '{model_id}' is not loaded") from None

    async def load(self, spec: ModelSpec) -> int:
        """Load a model into MLServer; returns its size in bytes."""
        model = resolve_model(spec)
        size = self._size(model.disk_bytes)
        if self.state is not AdapterState.READY:
            raise errors.UnavailableError(f"MLServer at {self.config.mlserver_grpc} is not ready")
        try:
            directory = write_model_dir(self.config.models_dir, model)
        except OSError as exc:
            raise errors.ModelLoadError(f"cannot write the MLServer settings: {exc}") from None
        try:
            await self._client.load(
                model.model_id, timeout_s=self.config.model_loading_timeout_ms / 1000
            )
        except asyncio.CancelledError:
            # The caller gave up; MLServer may still finish: undo in the background.
            self._spawn_cleanup(self._discard(model.model_id, directory, unload=True))
            raise
        except Exception as exc:
            # MLServer drops a model whose load failed; one that timed out
            # on our side (or went unanswered) may still be loading there.
            answered = isinstance(exc, errors.ModelLoadError) and not isinstance(
                exc, errors.LoadTimeoutError
            )
            await self._discard(model.model_id, directory, unload=not answered)
            raise
        self._models[model.model_id] = size
        log.info("loaded %s into MLServer (%d bytes)", model.model_id, size)
        return size

    async def unload(self, model_id: str) -> None:
        """Unload a model; an unknown id is no error (the SPI's contract)."""
        self._models.pop(model_id, None)
        # A lost MLServer holds nothing any more: only the directory is left.
        if self.state is AdapterState.READY:
            await self._client.unload(model_id, timeout_s=self.config.call_timeout_s)
        remove_model_dir(self.config.models_dir / model_dir_name(model_id))

    async def _discard(self, model_id: str, directory: pathlib.Path, *, unload: bool) -> None:
        """Undo a failed load: its settings must not stay in the repository,
        and with ``unload`` MLServer may hold the model after all."""
        if unload:
            try:
                await self._client.unload(model_id, timeout_s=self.config.call_timeout_s)
            except errors.MeshServeError as exc:
                log.warning("could not unload %s after its load failed: %s", model_id, exc)
        remove_model_dir(directory)

    def _spawn_cleanup(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="mlserver-cleanup")
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _purge(self) -> int:
        """Unload every model the models dir holds and remove it; returns
        how many MLServer held."""
        self._models.clear()
        unloaded = 0
        for directory in sorted(self.config.models_dir.iterdir()):
            name = read_model_name(directory)
            if name is not None and await self._client.unload(
                name, timeout_s=self.config.call_timeout_s
            ):
                unloaded += 1
            remove_model_dir(directory)
        return unloaded

    def _clear_models_dir(self) -> None:
        with contextlib.suppress(OSError):
            for entry in self.config.models_dir.iterdir():
                with contextlib.suppress(OSError):
                    remove_model_dir(entry)
