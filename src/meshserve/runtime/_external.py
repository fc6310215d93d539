"""The external host: a runtime process the instance did not start.

The instance reaches it at a loopback address (``127.0.0.1:PORT``,
``[::1]:PORT`` or ``unix:/PATH``; :class:`ListenAddress`'s rules) and speaks
ModelMesh's runtime SPI (``mmesh.ModelRuntime``) and the v2 inference
service to it over gRPC, as ModelMesh does with the model server in its pod.
Inference bodies travel untouched (identity serializers), with the concrete
model id in the ``mm-model-id`` header and, when the runtime asks for it in
runtimeStatus's ``methodInfos``, injected into the request as well.

The runtime's process identity is not part of the SPI, so any loss of the
connection counts as a loss of the runtime: :attr:`ExternalRuntime.state`
becomes LOST, calls fail with :class:`~meshserve.errors.UnavailableError`,
``on_lost`` runs (the owner forgets what was loaded), and the host polls
runtimeStatus until the runtime answers READY again, which by the SPI's
contract leaves nothing loaded; then ``on_reconnect`` runs. An idle
connection is never closed by this side, so a dropped connection means the
runtime closed it. A runtime that hangs without closing it shows up as
calls that time out, not as a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import MappingProxyType

import grpc
import grpc.aio

from meshserve import errors
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol._pb import model_runtime_pb2_grpc as spi_grpc
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.runtime._address import ListenAddress
from meshserve.runtime._call_errors import CallKind, call_error
from meshserve.runtime._interface import Runtime
from meshserve.runtime._model_id import id_injector, id_metadata
from meshserve.runtime._records import LoadResult, ModelSpec, RuntimeState, RuntimeStatus
from meshserve.runtime._server import MODEL_ID_HEADER
from meshserve.runtime._spi import (
    PREDICT_SIZE_TIMEOUT_S,
    infer_through_bytes,
    load_request,
    predict_size_request,
    status_from_proto,
)

__all__ = [
    "ExternalRuntime",
    "ExternalState",
    "connect_address",
    "wait_while_ready",
]

log = logging.getLogger(__name__)

INFER_METHOD = "inference.GRPCInferenceService/ModelInfer"
"""The methodInfos key under which a runtime asks for the model id in ModelInfer."""

_INFER_PATH = f"/{INFER_METHOD}"
_METADATA_PATH = "/inference.GRPCInferenceService/ModelMetadata"
_STATUS_PROBE_S = 1.0
_NEVER_MS = 2**31 - 1
_STOP_UNLOAD_S = 5.0  # stopping must not wait long for a runtime that hangs
# How a runtime that is down or still starting fails runtimeStatus.
_NOT_ANSWERING = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

Callback = Callable[[], Awaitable[None]]


class ExternalState(enum.Enum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    READY = "ready"
    LOST = "lost"
    """The connection dropped; reconnecting until runtimeStatus answers READY."""
    STOPPING = "stopping"


async def wait_while_ready(channel: grpc.aio.Channel) -> grpc.ChannelConnectivity:
    """Return once ``channel``, connected now, is not any more (an idle
    connection is never closed by our side: a drop means the peer went);
    returns the state it went to."""
    state = channel.get_state(try_to_connect=True)
    while state is grpc.ChannelConnectivity.READY:
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=False)
    return state


def connect_address(address: str | ListenAddress) -> ListenAddress:
    """Parse where a runtime listens; raises ValueError for anything but a
    Unix socket or a loopback ``HOST:PORT`` with a real port."""
    parsed = address if isinstance(address, ListenAddress) else ListenAddress.parse(address)
    if parsed.port == 0:
        raise ValueError(f"runtime address {address!s}: port 0 names no runtime to connect to")
    return parsed


class ExternalRuntime(Runtime):
    """A runtime reached at a loopback address, driven over ModelMesh's SPI.

    Parameters (keyword-only):

    ``address``
        ``127.0.0.1:PORT``, ``[::1]:PORT``, ``localhost:PORT`` or
        ``unix:/PATH``. Anything else (a network interface, a host name,
        port 0) raises ValueError here: the SPI has no authentication.
    ``data_address``
        Where the v2 inference calls (ModelInfer, ModelMetadata) go, under
        the same rules; None (the default) is ``address``. A runtime behind
        an adapter serves them itself, as ModelMesh sends inference straight
        to the model server's port (the ServingRuntime's grpcDataEndpoint),
        not through the adapter.
    ``start_timeout_s``
        How long :meth:`start` waits for runtimeStatus to answer READY.
    ``call_timeout_s``
        Deadline of unloadModel, modelSize and ModelMetadata (ModelMesh
        gives modelSize 30 s). loadModel's deadline is the runtime's own
        modelLoadingTimeoutMs; predictModelSize's is ModelMesh's 500 ms.
    ``infer_timeout_s``
        Deadline of a prediction; None (the default) waits as long as the
        caller does, as ModelMesh does.
    ``reconnect_backoff_initial_s``, ``reconnect_backoff_max_s``
        Delay between attempts to reach a lost runtime, doubling per attempt.
    ``on_lost``
        Awaited once each time the connection drops, before reconnecting:
        the runtime's models must be taken as gone.
    ``on_reconnect``
        Awaited once each time a lost runtime answers READY again (empty).
    """

    def __init__(
        self,
        *,
        address: str | ListenAddress,
        data_address: str | ListenAddress | None = None,
        start_timeout_s: float = 60.0,
        call_timeout_s: float = 30.0,
        infer_timeout_s: float | None = None,
        reconnect_backoff_initial_s: float = 0.1,
        reconnect_backoff_max_s: float = 5.0,
        on_lost: Callback | None = None,
        on_reconnect: Callback | None = None,
    ) -> None:
        self.address = connect_address(address)
        self.data_address = self.address if data_address is None else connect_address(data_address)
        self._start_timeout_s = start_timeout_s
        self._call_timeout_s = call_timeout_s
        self._infer_timeout_s = infer_timeout_s
        self._backoff_initial_s = reconnect_backoff_initial_s
        self._backoff_max_s = reconnect_backoff_max_s
        self._on_lost = on_lost
        self._on_reconnect = on_reconnect
        self._channel: grpc.aio.Channel | None = None
        self._data_channel: grpc.aio.Channel | None = None
        self._spi: spi_grpc.ModelRuntimeStub | None = None
        self._infer_call: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._metadata_call: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._reply: spi.RuntimeStatusResponse | None = None
        self._inject: Callable[[str], bytes] | None = None
        self._loaded: set[str] = set()
        self.state = ExternalState.STOPPED
        self.losses = 0
        """How many times the connection to the runtime was lost."""

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        self.state = ExternalState.CONNECTING
        backoff_ms = int(self._backoff_initial_s * 1000)
        common = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            # gRPC's default backoff grows to 120 s; a runtime that comes
            # back must be noticed about as fast as we poll for it.
            ("grpc.initial_reconnect_backoff_ms", backoff_ms),
            ("grpc.min_reconnect_backoff_ms", backoff_ms),
            ("grpc.max_reconnect_backoff_ms", int(self._backoff_max_s * 1000)),
        ]
        self._channel = grpc.aio.insecure_channel(
            self.address.grpc_target(),
            options=[
                *common,
                # A dropped connection must mean the runtime closed it.
                ("grpc.client_idle_timeout_ms", _NEVER_MS),
                # Our own connection, not one shared with other channels to
                # the same address, so its state is this runtime's.
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )
        self._spi = spi_grpc.ModelRuntimeStub(self._channel)
        data = self._channel
        if self.data_address != self.address:
            self._data_channel = grpc.aio.insecure_channel(
                self.data_address.grpc_target(), options=common
            )
            data = self._data_channel
        # No serializers: bodies pass as the caller encoded them.
        self._infer_call = data.unary_unary(_INFER_PATH)
        self._metadata_call = data.unary_unary(_METADATA_PATH)
        try:
            reply = await self._wait_ready(self._start_timeout_s)
            if reply is None:
                raise errors.UnavailableError(
                    f"the runtime at {self.address} did not answer READY within "
                    f"{self._start_timeout_s} s"
                )
        except BaseException:
            await self.stop()
            raise
        self._accept(reply)
        self._watcher = asyncio.create_task(self._watch(), name=f"runtime-watch {self.address}")

    async def stop(self) -> None:
        was_ready = self.state is ExternalState.READY
        self.state = ExternalState.STOPPING
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if was_ready:
            await self._unload_ours()
        self._loaded.clear()
        channel, self._channel, self._spi = self._channel, None, None
        data_channel, self._data_channel = self._data_channel, None
        self._infer_call = self._metadata_call = None
        for closing in (channel, data_channel):
            if closing is not None:
                await closing.close(grace=None)
        self.state = ExternalState.STOPPED

    async def _unload_ours(self) -> None:
        """The runtime outlives us: leave it without our models, as the
        interface promises, within a short bound."""
        loaded = sorted(self._loaded)
        if self._spi is None or not loaded:
            return
        stub = self._spi
        unloads = [
            stub.unloadModel(spi.UnloadModelRequest(modelId=model_id), timeout=self._call_timeout_s)
            for model_id in loaded
        ]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self._call_timeout_s, _STOP_UNLOAD_S)):
                results = await asyncio.gather(*unloads, return_exceptions=True)
                failed = sum(isinstance(result, BaseException) for result in results)
                if failed:
                    log.warning("%d of %d unloads failed while stopping", failed, len(loaded))

    async def _wait_ready(self, timeout_s: float | None) -> spi.RuntimeStatusResponse | None:
        """Poll runtimeStatus until READY (None when ``timeout_s`` runs out).
        Each READY answer purges what the runtime held: our accounting
        starts from nothing."""
        assert self._spi is not None
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        backoff = self._backoff_initial_s
        while True:
            remaining = _STATUS_PROBE_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                reply: spi.RuntimeStatusResponse = await self._spi.runtimeStatus(
                    spi.RuntimeStatusRequest(),
                    timeout=min(_STATUS_PROBE_S, remaining),
                    wait_for_ready=True,
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _NOT_ANSWERING:
                    log.warning("runtimeStatus at %s failed: %s", self.address, exc.details())
            else:
                if reply.status == spi.RuntimeStatusResponse.READY:
                    return reply
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._backoff_max_s)

    def _accept(self, reply: spi.RuntimeStatusResponse) -> None:
        self._reply = reply
        info = reply.methodInfos.get(INFER_METHOD)
        self._inject = None
        if info is not None and info.idInjectionPath:
            self._inject = id_injector(info.idInjectionPath, v2.ModelInferRequest.DESCRIPTOR)
            if self._inject is None:
                log.warning(
                    "runtime at %s: idInjectionPath %s does not name a string field of "
                    "ModelInferRequest; the model id goes in the %s header only",
                    self.address,
                    list(info.idInjectionPath),
                    MODEL_ID_HEADER,
                )
        self._loaded.clear()
        self.state = ExternalState.READY
        status = status_from_proto(reply)
        log.info(
            "runtime at %s is ready: %s, capacity %d bytes",
            self.address,
            status.runtime_version or "unknown version",
            status.capacity_bytes,
        )

    async def _watch(self) -> None:
        while True:
            try:
                if self.state is ExternalState.READY:
                    await self._until_lost()
                    await self._notify(self._on_lost, "on_lost")
                await self._reconnect()
            except Exception:
                # Never leave the runtime unwatched: a bug here must not turn
                # a later loss into silence.
                log.exception("watching the runtime at %s failed; watching again", self.address)
                await asyncio.sleep(self._backoff_max_s)

    async def _until_lost(self) -> None:
        assert self._channel is not None
        state = await wait_while_ready(self._channel)
        self.state = ExternalState.LOST
        self.losses += 1
        self._loaded.clear()
        log.error("lost the runtime at %s (connection %s)", self.address, state.name)

    async def _reconnect(self) -> None:
        reply = await self._wait_ready(None)
        assert reply is not None
        self._accept(reply)
        await self._notify(self._on_reconnect, "on_reconnect")

    @staticmethod
    async def _notify(callback: Callback | None, name: str) -> None:
        if callback is None:
            return
        try:
            await callback()
        except Exception:
            log.exception("%s callback failed", name)

    # -- what runtimeStatus said ----------------------------------------------

    @property
    def limit_model_concurrency(self) -> bool:
        """Whether loadModel's maxConcurrency bounds requests per model."""
        return self._reply is not None and self._reply.limitModelConcurrency

    @property
    def method_infos(self) -> Mapping[str, tuple[int, ...]]:
        """gRPC method -> the field path that receives the model id."""
        if self._reply is None:
            return MappingProxyType({})
        return MappingProxyType(
            {name: tuple(info.idInjectionPath) for name, info in self._reply.methodInfos.items()}
        )

    # -- SPI and inference -----------------------------------------------

    def _ready(self) -> spi_grpc.ModelRuntimeStub:
        if self.state is not ExternalState.READY or self._spi is None:
            raise errors.UnavailableError(f"the runtime at {self.address} is {self.state.value}")
        return self._spi

    @contextlib.contextmanager
    def _errors(self, call: CallKind, *, timeout_s: float | None = None) -> Iterator[None]:
        try:
            yield
        except grpc.aio.AioRpcError as exc:
            raise self._error(exc, call, timeout_s) from None

    def _error(
        self, exc: grpc.aio.AioRpcError, call: CallKind, timeout_s: float | None
    ) -> errors.MeshServeError:
        state = self.state.value if self.state is not ExternalState.READY else "not answering"
        return call_error(
            exc,
            call=call,
            runtime=f"the runtime at {self.address}",
            state=state,
            timeout_s=timeout_s,
        )

    async def status(self) -> RuntimeStatus:
        if self._reply is None:
            raise errors.UnavailableError(f"the runtime at {self.address} is {self.state.value}")
        status = status_from_proto(self._reply)
        if self.state is not ExternalState.READY:
            return dataclasses.replace(status, state=RuntimeState.FAILING)
        return status

    async def load(self, spec: ModelSpec) -> LoadResult:
        stub = self._ready()
        assert self._reply is not None
        timeout_s = self._reply.modelLoadingTimeoutMs / 1000 or None
        with self._errors(CallKind.LOAD, timeout_s=timeout_s):
            reply = await stub.loadModel(
                load_request(spec),
                timeout=timeout_s,
            )
        self._loaded.add(spec.model_id)
        return LoadResult(size_bytes=reply.sizeInBytes, max_concurrency=reply.maxConcurrency)

    async def unload(self, model_id: str) -> None:
        stub = self._ready()
        with self._errors(CallKind.MANAGE, timeout_s=self._call_timeout_s):
            await stub.unloadModel(
                spi.UnloadModelRequest(modelId=model_id), timeout=self._call_timeout_s
            )
        self._loaded.discard(model_id)

    async def predict_size(self, spec: ModelSpec) -> int:
        stub = self._ready()
        with self._errors(CallKind.MANAGE, timeout_s=PREDICT_SIZE_TIMEOUT_S):
            reply = await stub.predictModelSize(
                predict_size_request(spec),
                timeout=PREDICT_SIZE_TIMEOUT_S,
            )
        return int(reply.sizeInBytes)

    async def model_size(self, model_id: str) -> int:
        stub = self._ready()
        with self._errors(CallKind.MANAGE, timeout_s=self._call_timeout_s):
            reply = await stub.modelSize(
                spi.ModelSizeRequest(modelId=model_id), timeout=self._call_timeout_s
            )
        return int(reply.sizeInBytes)

    async def metadata(self, model_id: str) -> ModelMetadata:
        self._ready()
        assert self._metadata_call is not None
        body = v2.ModelMetadataRequest(name=model_id).SerializeToString()
        with self._errors(CallKind.MANAGE, timeout_s=self._call_timeout_s):
            reply: bytes = await self._metadata_call(
                body, metadata=id_metadata(model_id), timeout=self._call_timeout_s
            )
        return codecs.metadata_from_proto(v2.ModelMetadataResponse.FromString(reply))

    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        return await infer_through_bytes(self.infer_grpc, model_id, request)

    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        self._ready()
        assert self._infer_call is not None
        if self._inject is not None:
            body += self._inject(model_id)
        with self._errors(CallKind.INFER, timeout_s=self._infer_timeout_s):
            reply: bytes = await self._infer_call(
                body, metadata=id_metadata(model_id), timeout=self._infer_timeout_s
            )
        return reply
