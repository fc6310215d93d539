"""The runtime server: ModelMesh's runtime SPI plus v2 inference, for one
built-in runtime, on a Unix socket (mode 0600) or a loopback TCP port.

This is what ``meshserve runtime`` runs: the process an instance spawns for
its out-of-process host, and the "direct" baseline of the benchmarks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import pathlib
from collections.abc import Callable
from typing import TypeVar

import grpc
import grpc.aio

from meshserve import __version__
from meshserve._lifecycle import Service
from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol._pb import model_runtime_pb2_grpc as spi_grpc
from meshserve.protocol.inference import ModelMetadata
from meshserve.protocol.routing import NO_HEADERS, RoutingHeaders, ServerInfo
from meshserve.protocol.service import v2_handler
from meshserve.protocol.status import reports_errors
from meshserve.runtime._address import ListenAddress
from meshserve.runtime._batch_run import BatchRun, Item, run_batch
from meshserve.runtime._batcher import Batcher
from meshserve.runtime._builtin import BuiltinRuntime, load_workers, start_preload
from meshserve.runtime._link import LinkServer, link_path
from meshserve.runtime._spi import spec_from_request

__all__ = ["MODEL_ID_HEADER", "RuntimeServer", "bind_and_start"]

log = logging.getLogger(__name__)

T = TypeVar("T")

MODEL_ID_HEADER = "mm-model-id"
"""Metadata key naming the concrete model, as ModelMesh sends it to runtimes."""

# The instance in front enforces grpcMaxMessageSizeBytes; the runtime's own
# link must not cut off anything the instance accepted.
_UNLIMITED_MESSAGES = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


class _Pools:
    """Executors that keep blocking library code off the event loop."""

    def __init__(self, *, load_workers: int, predict_workers: int) -> None:
        self.load = concurrent.futures.ThreadPoolExecutor(
            max_workers=load_workers, thread_name_prefix="runtime-load"
        )
        self.predict = concurrent.futures.ThreadPoolExecutor(
            max_workers=predict_workers, thread_name_prefix="runtime-predict"
        )

    async def run(self, pool: concurrent.futures.Executor, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    def shutdown(self) -> None:
        self.load.shutdown(wait=False, cancel_futures=True)
        self.predict.shutdown(wait=False, cancel_futures=True)


class _ModelRuntimeServicer(spi_grpc.ModelRuntimeServicer):
    def __init__(self, runtime: BuiltinRuntime, pools: _Pools, batcher: Batcher) -> None:
        self._runtime = runtime
        self._pools = pools
        self._batcher = batcher

    @reports_errors
    async def loadModel(
        self, request: spi.LoadModelRequest, context: grpc.aio.ServicerContext
    ) -> spi.LoadModelResponse:
        result = await self._pools.run(
            self._pools.load, functools.partial(self._runtime.load, spec_from_request(request))
        )
        return spi.LoadModelResponse(
            sizeInBytes=result.size_bytes, maxConcurrency=result.max_concurrency
        )

    @reports_errors
    async def unloadModel(
        self, request: spi.UnloadModelRequest, context: grpc.aio.ServicerContext
    ) -> spi.UnloadModelResponse:
        self._runtime.unload(request.modelId)
        self._batcher.forget(request.modelId)
        return spi.UnloadModelResponse()

    @reports_errors
    async def predictModelSize(
        self, request: spi.PredictModelSizeRequest, context: grpc.aio.ServicerContext
    ) -> spi.PredictModelSizeResponse:
        return spi.PredictModelSizeResponse(
            sizeInBytes=self._runtime.predict_size(spec_from_request(request))
        )

    @reports_errors
    async def modelSize(
        self, request: spi.ModelSizeRequest, context: grpc.aio.ServicerContext
    ) -> spi.ModelSizeResponse:
        return spi.ModelSizeResponse(sizeInBytes=self._runtime.model_size(request.modelId))

    @reports_errors
    async def runtimeStatus(
        self, request: spi.RuntimeStatusRequest, context: grpc.aio.ServicerContext
    ) -> spi.RuntimeStatusResponse:
        # Called when an instance (re)connects: whatever is loaded is from
        # before, and the instance's accounting no longer includes it.
        purged = self._runtime.purge()
        if purged:
            log.warning("runtimeStatus: purged %d models loaded before this call", purged)
        status = self._runtime.status()
        return spi.RuntimeStatusResponse(
            status=spi.RuntimeStatusResponse.READY,
            capacityInBytes=status.capacity_bytes,
            maxLoadingConcurrency=status.max_loading_concurrency,
            modelLoadingTimeoutMs=status.model_loading_timeout_ms,
            defaultModelSizeInBytes=status.default_model_size_bytes,
            runtimeVersion=status.runtime_version,
            # The v2 ModelInfer request names its model in field 1.
            methodInfos={
                "inference.GRPCInferenceService/ModelInfer": (
                    spi.RuntimeStatusResponse.MethodInfo(idInjectionPath=[1])
                ),
            },
        )


class _RuntimeBackend:
    """The v2 service's backend for one built-in runtime: a name is a model
    id (or the instance's mm-model-id header is), nothing loads on demand."""

    def __init__(self, runtime: BuiltinRuntime, pools: _Pools) -> None:
        self._runtime = runtime
        self._pools = pools
        # Concurrent requests from the instance merge here, in the runtime's
        # process: the instance only forwards bytes.
        self.batcher = Batcher(execute=self._execute, limits_for=runtime.batch_limits)

    async def _execute(self, model_id: str, items: list[Item], *, merging: bool) -> BatchRun:
        # Decoded in the worker thread, not on the loop.
        return await self._pools.run(
            self._pools.predict,
            functools.partial(run_batch, self._runtime, model_id, items, merging=merging),
        )

    def resolve(self, name: str, headers: RoutingHeaders) -> str:
        return headers.model_id or name

    async def infer_grpc(
        self, model_id: str, body: bytes, headers: RoutingHeaders = NO_HEADERS
    ) -> bytes:
        return await self.batcher.infer_grpc(model_id, body)

    async def model_metadata(
        self, model_id: str, headers: RoutingHeaders = NO_HEADERS
    ) -> ModelMetadata:
        return self._runtime.metadata(model_id)

    def model_ready(self, model_id: str) -> bool:
        return self._runtime.is_loaded(model_id)

    def server_ready(self) -> bool:
        return True

    def server_info(self) -> ServerInfo:
        return ServerInfo(name="meshserve-runtime", version=__version__)


async def bind_and_start(server: grpc.aio.Server, listen: ListenAddress) -> str:
    """Bind ``server`` to ``listen`` and start it; returns the bound address
    in gRPC's syntax (the real port when 0 was asked for).

    A Unix socket replaces any stale one at the path and is created with
    mode 0600 (its directory is made if missing).
    """
    if listen.unix_path is None:
        port = server.add_insecure_port(listen.grpc_target())
        await server.start()
        return listen.grpc_target(port)
    path = pathlib.Path(listen.unix_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # The socket must never exist with looser permissions, even for the
    # instant between bind and chmod: bind under a strict umask.
    previous = os.umask(0o177)
    try:
        server.add_insecure_port(listen.grpc_target())
        await server.start()
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    return listen.grpc_target()


class RuntimeServer(Service):
    """Serves one :class:`BuiltinRuntime` over gRPC.

    ``async with RuntimeServer(...) as server`` binds and starts it;
    ``server.address`` is then the bound address (the real port when 0 was
    asked for).
    """

    def __init__(
        self,
        *,
        runtime: BuiltinRuntime,
        listen: ListenAddress,
    ) -> None:
        self._runtime = runtime
        self._listen = listen
        self._server: grpc.aio.Server | None = None
        self._pools: _Pools | None = None
        self._link: LinkServer | None = None
        self._backend: _RuntimeBackend | None = None
        self.address: str = str(listen)

    async def start(self) -> None:
        pools = _Pools(
            load_workers=load_workers(self._runtime.settings),
            predict_workers=self._runtime.settings.predict_workers,
        )
        start_preload(self._runtime)
        server = grpc.aio.server(options=_UNLIMITED_MESSAGES)
        backend = _RuntimeBackend(self._runtime, pools)
        spi_grpc.add_ModelRuntimeServicer_to_server(
            _ModelRuntimeServicer(self._runtime, pools, backend.batcher), server
        )
        server.add_generic_rpc_handlers((v2_handler(backend),))
        if self._listen.unix_path is not None:
            path = pathlib.Path(self._listen.unix_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # Up before the SPI answers, so an instance that sees READY can
            # use the data link at once.
            self._link = LinkServer(path=link_path(path), handler=backend.infer_grpc)
            await self._link.start()
        self.address = await bind_and_start(server, self._listen)
        self._server, self._pools, self._backend = server, pools, backend
        log.info("runtime listening on %s", self.address)

    async def stop(self, grace: float = 1.0) -> None:
        if self._link is not None:
            await self._link.stop()
            self._link = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self._backend is not None:
            await self._backend.batcher.close()
            self._backend = None
        if self._pools is not None:
            self._pools.shutdown()
            self._pools = None
        if self._listen.unix_path is not None:
            pathlib.Path(self._listen.unix_path).unlink(missing_ok=True)

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()
