"""MLServer's gRPC port as the adapter uses it: readiness, version, and the
model repository extension (load and unload by name).

MLServer serves the repository calls on ``inference.GRPCInferenceService``
itself (RepositoryModelLoad, RepositoryModelUnload), as ModelMesh's adapter
uses them. They take the model name in a message field, so any model id
works; the REST form puts it in the URL path, where a ``/`` in an id cannot
be told from a separator. Failures come back as meshserve's error types.
"""

from __future__ import annotations

import logging

import grpc
import grpc.aio

from meshserve import errors
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import grpc_predict_v2_pb2_grpc as v2_grpc
from meshserve.runtime._address import ListenAddress
from meshserve.runtime._external import wait_while_ready

__all__ = ["MLServerClient", "repository_request"]

log = logging.getLogger(__name__)

_SERVICE = "/inference.GRPCInferenceService"
_NEVER_MS = 2**31 - 1
_PROBE_S = 1.0
# MLServer reports an unknown model as NOT_FOUND (older releases used
# INVALID_ARGUMENT, which ModelMesh's adapter also accepts).
_UNKNOWN = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
_NOT_ANSWERING = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


_MODEL_NAME_TAG = 2 << 3 | 2  # field 2, length-delimited


def repository_request(name: str) -> bytes:
    """A RepositoryModelLoadRequest (RepositoryModelUnloadRequest has the
    same fields) with only ``model_name`` (field 2) set.

    Encoded here: meshserve ships none of MLServer's protos, and this is one
    string field (tag, varint length, UTF-8).
    """
    payload = name.encode()
    length = bytearray()
    size = len(payload)
    while size > 0x7F:
        length.append(size & 0x7F | 0x80)
        size >>= 7
    length.append(size)
    return bytes([_MODEL_NAME_TAG]) + bytes(length) + payload


class MLServerClient:
    """One gRPC channel to MLServer at ``address`` (a loopback ``HOST:PORT``)."""

    def __init__(self, *, address: ListenAddress) -> None:
        self.address = address
        self._channel: grpc.aio.Channel | None = None
        self._v2: v2_grpc.GRPCInferenceServiceStub | None = None
        self._load: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._unload: grpc.aio.UnaryUnaryMultiCallable | None = None

    async def open(self) -> None:
        self._channel = grpc.aio.insecure_channel(
            self.address.grpc_target(),
            options=[
                # A dropped connection must mean MLServer went away.
                ("grpc.client_idle_timeout_ms", _NEVER_MS),
                ("grpc.use_local_subchannel_pool", 1),
                # Notice a restarted MLServer within about a probe interval.
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._v2 = v2_grpc.GRPCInferenceServiceStub(self._channel)
        # No deserializer: the replies are empty messages.
        self._load = self._channel.unary_unary(f"{_SERVICE}/RepositoryModelLoad")
        self._unload = self._channel.unary_unary(f"{_SERVICE}/RepositoryModelUnload")

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        self._v2 = self._load = self._unload = None
        if channel is not None:
            await channel.close(grace=None)

    def _stub(self) -> v2_grpc.GRPCInferenceServiceStub:
        if self._v2 is None:
            raise errors.UnavailableError("the MLServer client is closed")
        return self._v2

    async def ready(self, timeout_s: float = _PROBE_S) -> bool:
        """Whether MLServer answers ServerReady with ready."""
        try:
            reply = await self._stub().ServerReady(v2.ServerReadyRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.ready)

    async def version(self, timeout_s: float = _PROBE_S) -> str:
        """``mlserver/<version>`` as MLServer reports it ("" if it does not)."""
        try:
            reply = await self._stub().ServerMetadata(v2.ServerMetadataRequest(), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.warning("MLServer at %s did not report its version: %s", self.address, exc.code())
            return ""
        return f"{reply.name or 'mlserver'}/{reply.version}" if reply.version else ""

    async def wait_lost(self) -> None:
        """Return once the connection to MLServer, up now, drops."""
        assert self._channel is not None
        await wait_while_ready(self._channel)

    async def load(self, name: str, *, timeout_s: float | None) -> None:
        """Have MLServer load the model its repository holds under ``name``."""
        if self._load is None:
            raise errors.UnavailableError("the MLServer client is closed")
        try:
            await self._load(repository_request(name), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise self._load_error(name, exc, timeout_s) from None

    def _load_error(
        self, name: str, exc: grpc.aio.AioRpcError, timeout_s: float | None
    ) -> errors.MeshServeError:
        code, details = exc.code(), exc.details()
        if code in _NOT_ANSWERING:
            return errors.UnavailableError(f"MLServer at {self.address} is not answering")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return errors.LoadTimeoutError(f"MLServer did not load '{name}' within {timeout_s} s")
        if code is grpc.StatusCode.NOT_FOUND:
            return errors.ModelLoadError(
                f"MLServer found no model named '{name}' in its model repository ({details}); "
                "does it serve the adapter's models dir?"
            )
        # MLServer sends the exception's text; some (EOFError) have none.
        reason = details or "it gave no reason; its log has the traceback"
        return errors.ModelLoadError(f"MLServer could not load '{name}' ({code.name}): {reason}")

    async def unload(self, name: str, *, timeout_s: float) -> bool:
        """Have MLServer unload ``name``; False when it did not hold it."""
        if self._unload is None:
            raise errors.UnavailableError("the MLServer client is closed")
        try:
            await self._unload(repository_request(name), timeout=timeout_s)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code in _UNKNOWN:
                return False
            if code in _NOT_ANSWERING or code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise errors.UnavailableError(
                    f"MLServer at {self.address} did not unload '{name}': {code.name}"
                ) from None
            raise errors.MeshServeError(
                f"MLServer could not unload '{name}' ({code.name}): {exc.details()}"
            ) from None
        return True
