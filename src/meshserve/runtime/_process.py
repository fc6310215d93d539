"""The out-of-process host: the built-in runtime in a supervised child.

The child (``meshserve runtime --listen unix:...``) listens on a Unix socket
of mode 0600 in a private directory, never on TCP. When the instance runs as
root, the child becomes ``runtime.run_as_user`` before it serves (the
directory is handed to that user first). A crash kills the child, not the
instance: the supervisor restarts it with exponential backoff and calls
``on_restart`` so the owner can reload what it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping

import grpc
import grpc.aio

from meshserve.errors import (
    MeshServeError,
    PreconditionFailedError,
    RuntimeRestartingError,
    UnavailableError,
)
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import grpc_predict_v2_pb2_grpc as v2_grpc
from meshserve.protocol._pb import model_runtime_pb2 as spi
from meshserve.protocol._pb import model_runtime_pb2_grpc as spi_grpc
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.status import error_from_rpc
from meshserve.runtime._interface import Runtime
from meshserve.runtime._link import LinkClient, link_path
from meshserve.runtime._records import LoadResult, ModelSpec, RuntimeStatus
from meshserve.runtime._server import MODEL_ID_HEADER
from meshserve.runtime._spi import (
    PREDICT_SIZE_TIMEOUT_S,
    infer_through_bytes,
    load_request,
    predict_size_request,
    status_from_proto,
)
from meshserve.security import (
    RUN_AS_USER_ADVICE,
    resolve_user,
    runtime_environment,
    unreadable_after_drop,
)
from meshserve.settings import RuntimeSettings

__all__ = ["HostState", "ProcessRuntime", "settings_env"]

log = logging.getLogger(__name__)

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]


class HostState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    STOPPING = "stopping"


def settings_env(settings: RuntimeSettings) -> dict[str, str]:
    """The child's environment entries that reproduce ``settings`` exactly."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        key = f"MESHSERVE_RUNTIME__{name.upper()}"
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


def runtime_user(settings: RuntimeSettings) -> tuple[int, int] | None:
    """(uid, gid) the child must become, or None to keep ours (not root, or
    the drop is switched off)."""
    if os.geteuid() != 0 or not settings.run_as_user:
        return None
    return resolve_user(settings.run_as_user)


class ProcessRuntime(Runtime):
    """Runs ``meshserve runtime`` as a child and talks to it over the SPI."""

    def __init__(
        self,
        *,
        settings: RuntimeSettings,
        socket_dir: pathlib.Path | None = None,
        on_restart: Callable[[], Awaitable[None]] | None = None,
        extra_env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self._settings = settings
        self._requested_dir = socket_dir
        self._on_restart = on_restart
        self._extra_env = dict(extra_env or {})
        self._python = python
        self._dir: pathlib.Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._channel: grpc.aio.Channel | None = None
        self._spi: spi_grpc.ModelRuntimeStub | None = None
        self._v2: v2_grpc.GRPCInferenceServiceStub | None = None
        self._link: LinkClient | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._status: RuntimeStatus | None = None
        self._user: tuple[int, int] | None = None
        self.state = HostState.STOPPED
        self.restarts = 0
        """How many times the child was restarted after dying."""

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    @property
    def socket_path(self) -> pathlib.Path | None:
        return self._dir / "runtime.sock" if self._dir is not None else None

    async def start(self) -> None:
        if self._requested_dir is not None:
            self._requested_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._dir = self._requested_dir
        else:
            # A short private path: Unix socket paths are limited to ~107 bytes.
            self._dir = pathlib.Path(tempfile.mkdtemp(prefix="meshserve-rt-"))
        os.chmod(self._dir, 0o700)
        self.state = HostState.STARTING
        try:
            self._user = runtime_user(self._settings)
            if self._user is not None:
                # The child creates its sockets here after becoming the user;
                # root (us) still reaches them.
                os.chown(self._dir, *self._user)
        except (ValueError, OSError) as exc:
            await self.stop()
            raise UnavailableError(f"cannot prepare the runtime's user: {exc}") from None
        try:
            await self._check_user_can_run()
            await self._spawn_until_ready()
        except BaseException:
            await self.stop()
            raise
        self.state = HostState.READY
        self._supervisor = asyncio.create_task(self._supervise(), name="runtime-supervisor")

    async def stop(self) -> None:
        self.state = HostState.STOPPING
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._close_channel()
        await self._terminate()
        if self._dir is not None and self._requested_dir is None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self.state = HostState.STOPPED

    # -- child lifecycle -------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        # The runtime may run a hostile artifact: none of our secrets go with it.
        return {
            **runtime_environment(os.environ),
            **settings_env(self._settings),
            **self._extra_env,
        }

    async def _check_user_can_run(self) -> None:
        """Fail with what to do, rather than with the child's exit code, when
        the user it drops to cannot read the Python environment (one under
        root's home, or in a private temporary directory)."""
        if self._user is None:
            return
        unreadable = await unreadable_after_drop(
            python=self._python,
            env=self._child_env(),
            user=self._user,
            timeout_s=self._settings.start_timeout_s,
        )
        if unreadable is not None:
            raise PreconditionFailedError(
                f"the runtime cannot run as runtime.runAsUser {self._settings.run_as_user!r} "
                f"(uid {self._user[0]}): that user cannot read {unreadable}; "
                f"{RUN_AS_USER_ADVICE}"
            )

    async def _spawn_until_ready(self) -> None:
        assert self._dir is not None
        socket = self._dir / "runtime.sock"
        socket.unlink(missing_ok=True)
        env = self._child_env()
        user = ["--user", str(self._user[0])] if self._user is not None else []
        self._proc = await asyncio.create_subprocess_exec(
            self._python,
            "-m",
            "meshserve",
            "runtime",
            "--listen",
            f"unix:{socket}",
            "--exit-with-parent",
            str(os.getpid()),
            *user,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
        )
        log.info(
            "started runtime process %d on unix:%s%s",
            self._proc.pid,
            socket,
            f" as uid {self._user[0]}" if self._user is not None else "",
        )
        await self._close_channel()
        self._channel = grpc.aio.insecure_channel(f"unix:{socket}", options=_CHANNEL_OPTIONS)
        self._spi = spi_grpc.ModelRuntimeStub(self._channel)
        self._v2 = v2_grpc.GRPCInferenceServiceStub(self._channel)
        self._link = LinkClient(path=link_path(socket))
        self._status = await self._wait_ready()

    async def _wait_ready(self) -> RuntimeStatus:
        assert self._spi is not None and self._proc is not None
        deadline = time.monotonic() + self._settings.start_timeout_s
        while True:
            if self._proc.returncode is not None:
                raise UnavailableError(
                    f"runtime process exited with code {self._proc.returncode} while starting"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UnavailableError(
                    f"runtime process did not become ready within "
                    f"{self._settings.start_timeout_s} s"
                )
            try:
                reply = await self._spi.runtimeStatus(
                    spi.RuntimeStatusRequest(), timeout=min(1.0, remaining), wait_for_ready=True
                )
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.05)
                continue
            if reply.status == spi.RuntimeStatusResponse.READY:
                return status_from_proto(reply)
            await asyncio.sleep(0.05)

    async def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self._settings.stop_grace_s)
        except TimeoutError:
            log.warning("runtime process %d ignored SIGTERM; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _close_channel(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(grace=None)

    async def _supervise(self) -> None:
        backoff = self._settings.restart_backoff_initial_s
        while True:
            proc = self._proc
            if proc is not None:
                code = await proc.wait()
                log.error("runtime process %d exited with code %s", proc.pid, code)
            self.state = HostState.RESTARTING
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._settings.restart_backoff_max_s)
            try:
                await self._terminate()
                await self._spawn_until_ready()
            except MeshServeError as exc:
                log.error("runtime restart failed: %s; next try in %.1f s", exc, backoff)
                continue
            self.restarts += 1
            self.state = HostState.READY
            backoff = self._settings.restart_backoff_initial_s
            log.info("runtime process restarted (restart #%d)", self.restarts)
            if self._on_restart is not None:
                try:
                    await self._on_restart()
                except Exception:
                    log.exception("on_restart callback failed")

    # -- SPI and inference -----------------------------------------------

    def _not_ready(self) -> UnavailableError:
        """The error of a call made while the child is not ready: one that
        another copy may serve (or that waits) while it restarts."""
        message = f"the runtime process is {self.state.value}"
        if self.state is HostState.RESTARTING:
            return RuntimeRestartingError(message)
        return UnavailableError(message)

    def _ready_stubs(self) -> tuple[spi_grpc.ModelRuntimeStub, v2_grpc.GRPCInferenceServiceStub]:
        if self.state is not HostState.READY or self._spi is None or self._v2 is None:
            raise self._not_ready()
        return self._spi, self._v2

    @contextlib.contextmanager
    def _rpc_errors(self) -> Iterator[None]:
        try:
            yield
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAVAILABLE and self.state is not HostState.READY:
                raise self._not_ready() from None
            raise error_from_rpc(exc.code(), exc.details(), exc.trailing_metadata()) from None

    async def status(self) -> RuntimeStatus:
        if self._status is None:
            raise self._not_ready()
        return self._status

    async def load(self, spec: ModelSpec) -> LoadResult:
        stub, _ = self._ready_stubs()
        with self._rpc_errors():
            reply = await stub.loadModel(load_request(spec))
        return LoadResult(size_bytes=reply.sizeInBytes, max_concurrency=reply.maxConcurrency)

    async def unload(self, model_id: str) -> None:
        stub, _ = self._ready_stubs()
        with self._rpc_errors():
            await stub.unloadModel(spi.UnloadModelRequest(modelId=model_id))

    async def predict_size(self, spec: ModelSpec) -> int:
        stub, _ = self._ready_stubs()
        with self._rpc_errors():
            reply = await stub.predictModelSize(
                predict_size_request(spec),
                timeout=PREDICT_SIZE_TIMEOUT_S,
            )
        return int(reply.sizeInBytes)

    async def model_size(self, model_id: str) -> int:
        stub, _ = self._ready_stubs()
        with self._rpc_errors():
            reply = await stub.modelSize(spi.ModelSizeRequest(modelId=model_id), timeout=30)
        return int(reply.sizeInBytes)

    async def metadata(self, model_id: str) -> ModelMetadata:
        _, stub = self._ready_stubs()
        with self._rpc_errors():
            reply = await stub.ModelMetadata(
                v2.ModelMetadataRequest(name=model_id), metadata=((MODEL_ID_HEADER, model_id),)
            )
        return codecs.metadata_from_proto(reply)

    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        return await infer_through_bytes(self.infer_grpc, model_id, request)

    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        self._ready_stubs()
        assert self._link is not None
        try:
            return await self._link.call(model_id, body)
        except UnavailableError as exc:
            if self.state is not HostState.READY:
                raise self._not_ready() from None
            # The child died and the supervisor has not noticed yet (it
            # restarts it): another copy may serve the request meanwhile.
            raise RuntimeRestartingError(
                f"the runtime process stopped answering ({exc}); it is restarted if it died"
            ) from None
