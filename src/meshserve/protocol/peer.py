"""Calls from one instance to another's internal port.

Inference bodies travel as the client sent them (identity serializers), with
the hop headers that keep forwarding bounded. A peer that does not answer is
reported as ``PeerUnreachableError`` (``PeerTimeoutError`` when the call's
deadline passed) so the caller can try another instance; any other error
comes back as the type the peer raised. ServerLive is the liveness probe of
a peer that did not answer in time.

Each call carries the mesh secret's token (``MESH_AUTH_HEADER``): the
internal port serves only callers that hold it, and only the methods in
``PEER_METHODS``. Inference to a peer that publishes a data port goes
there instead (``data_link``: the same request bytes, metadata, deadline
and errors, for a third of the cost).
"""

from __future__ import annotations

import grpc
import grpc.aio

from meshserve.errors import MeshServeError
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol._peer_errors import peer_error
from meshserve.protocol.data_link import DataLinks, DataPortUnreachable
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import Metadata
from meshserve.tracing import outgoing

__all__ = ["MESH_AUTH_HEADER", "PEER_METHODS", "PeerClient"]

_INFER = "/inference.GRPCInferenceService/ModelInfer"
_METADATA = "/inference.GRPCInferenceService/ModelMetadata"
_ENSURE_LOADED = "/mmesh.ModelMesh/ensureLoaded"
_LIVE = "/inference.GRPCInferenceService/ServerLive"

PEER_METHODS = frozenset({_INFER, _METADATA, _ENSURE_LOADED, _LIVE})
"""What instances call on each other's internal port: all it serves."""

MESH_AUTH_HEADER = "meshserve-mesh-auth"
"""Call metadata carrying the mesh secret's token."""


class PeerClient:
    """Warm channels to other instances, one per address, each method's
    callable made once: a call builds nothing but its metadata."""

    def __init__(
        self,
        *,
        max_message_bytes: int,
        timeout_s: float,
        mesh_token: str,
        credentials: grpc.ChannelCredentials | None = None,
        data_links: DataLinks | None = None,
    ) -> None:
        """``mesh_token``: the mesh secret's token, sent with every call;
        ``data_links``: forward inference over peers' data ports (to a peer
        that has one) rather than gRPC (None: always gRPC)."""
        self._options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self._timeout_s = timeout_s
        self._credentials = credentials
        self._data_links = data_links
        self._auth = ((MESH_AUTH_HEADER, mesh_token),)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._methods: dict[tuple[str, str], grpc.aio.UnaryUnaryMultiCallable] = {}
        """Per (address, method): made once, over the address's one channel."""

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(address, options=self._options)
            else:
                channel = grpc.aio.secure_channel(address, self._credentials, options=self._options)
            self._channels[address] = channel
        return channel

    def _method(self, address: str, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        callable_ = self._methods.get((address, method))
        if callable_ is None:
            callable_ = self._methods[address, method] = self._channel(address).unary_unary(method)
        return callable_

    async def close(self) -> None:
        if self._data_links is not None:
            await self._data_links.close()
        channels, self._channels = self._channels, {}
        self._methods = {}
        for channel in channels.values():
            await channel.close()

    async def _call(
        self,
        address: str,
        method: str,
        body: bytes,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
    ) -> bytes:
        call = self._method(address, method)
        try:
            response: bytes = await call(
                body,
                # The trace context makes the peer's spans children of this hop's.
                metadata=(*metadata, *self._auth, *outgoing()),
                timeout=timeout_s or self._timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise _error(address, exc) from None
        return response

    async def infer(
        self,
        address: str,
        body: bytes,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
        data_address: str = "",
    ) -> bytes:
        """Forward a serialized ModelInferRequest; the serialized response.
        ``data_address``: the peer's data port ("": it has none), used when
        this client has data links."""
        links = self._data_links
        if data_address and links is not None and links.usable(data_address):
            try:
                return await links.infer(
                    data_address, body, (*metadata, *outgoing()), timeout_s=timeout_s
                )
            except DataPortUnreachable:
                pass  # nothing was sent: over gRPC, as to a peer without a data port
        return await self._call(address, _INFER, body, metadata, timeout_s=timeout_s)

    async def infer_decoded(
        self,
        address: str,
        request: InferenceRequest,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
        data_address: str = "",
    ) -> InferenceResponse:
        """Forward a decoded request (one that came in over REST)."""
        body = codecs.request_to_proto(request).SerializeToString()
        response = await self.infer(
            address, body, metadata, timeout_s=timeout_s, data_address=data_address
        )
        return codecs.response_from_proto(v2.ModelInferResponse.FromString(response))

    async def model_metadata(
        self, address: str, model_id: str, metadata: Metadata, *, timeout_s: float | None = None
    ) -> ModelMetadata:
        body = v2.ModelMetadataRequest(name=model_id).SerializeToString()
        response = await self._call(address, _METADATA, body, metadata, timeout_s=timeout_s)
        return codecs.metadata_from_proto(v2.ModelMetadataResponse.FromString(response))

    async def live(self, address: str, *, timeout_s: float) -> None:
        """Return if the peer answers ServerLive within ``timeout_s``
        (PeerUnreachableError if not)."""
        body = v2.ServerLiveRequest().SerializeToString()
        await self._call(address, _LIVE, body, (), timeout_s=timeout_s)

    async def ensure_loaded(
        self, address: str, model_id: str, metadata: Metadata, *, sync: bool, last_used_ms: int
    ) -> None:
        """Ask the peer to load its own copy (the metadata names it ``mm-dest``)."""
        body = mm.EnsureLoadedRequest(
            modelId=model_id, sync=sync, lastUsedTime=last_used_ms
        ).SerializeToString()
        await self._call(address, _ENSURE_LOADED, body, metadata)


def _error(address: str, exc: grpc.aio.AioRpcError) -> MeshServeError:
    return peer_error(address, exc.code(), exc.details(), tuple(exc.trailing_metadata() or ()))
