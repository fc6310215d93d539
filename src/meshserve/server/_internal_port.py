"""The internal port: where instances of one mesh forward to each other.

It serves only what :class:`~meshserve.protocol.peer.PeerClient` calls
(``PEER_METHODS``: forwarded ModelInfer and ModelMetadata, ensureLoaded
with a placement's ``mm-dest``, ServerLive to probe a suspect peer), never
management, admin or listing, and only to callers that present the mesh secret's token
(:class:`InternalPortGuard`). With TLS the port is mutual TLS as well, so
a peer needs both a certificate from the CA and the secret: a client
certificate alone is not enough.

Where the secret comes from when ``mesh.secretFile`` is unset: the store,
where the first instance creates it (:func:`secret_from_store`); every
process that may read the store is trusted with the mesh anyway.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from meshserve.errors import UnauthenticatedError, UnavailableError
from meshserve.mesh import Instance
from meshserve.protocol import status
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol.access_log import AccessLog
from meshserve.protocol.peer import MESH_AUTH_HEADER, PEER_METHODS
from meshserve.protocol.service import v2_handler
from meshserve.security import DeniedHook, MeshSecret, new_mesh_secret_text
from meshserve.server._grpc_management import ModelMeshService
from meshserve.store import Store

__all__ = [
    "MESH_SECRET_KEY",
    "InternalPortGuard",
    "internal_handlers",
    "secret_from_store",
]

log = logging.getLogger(__name__)

MESH_SECRET_KEY = "mesh/secret"
"""Store key (inside the mesh's scope) of a secret the instances share."""

_V2_SERVICE = "inference.GRPCInferenceService"
_MM_SERVICE = "mmesh.ModelMesh"
_REFUSAL = (
    "the internal port serves only other instances of this mesh, and this call "
    "does not carry the mesh secret (mesh.secretFile)"
)


def _short_names(service: str) -> set[str]:
    prefix = f"/{service}/"
    return {name[len(prefix) :] for name in PEER_METHODS if name.startswith(prefix)}


def internal_handlers(
    instance: Instance, *, access_log: AccessLog | None = None
) -> tuple[grpc.GenericRpcHandler, ...]:
    """Handlers for exactly ``PEER_METHODS``: any other method is UNIMPLEMENTED.
    Forwarded inference goes to ``access_log`` (marked forwarded) when given."""
    management = ModelMeshService(instance, internal=True)
    mesh_methods: dict[str, grpc.RpcMethodHandler] = {
        "ensureLoaded": grpc.unary_unary_rpc_method_handler(
            management.ensureLoaded,
            request_deserializer=mm.EnsureLoadedRequest.FromString,
            response_serializer=mm.ModelStatusInfo.SerializeToString,
        ),
    }
    wanted = _short_names(_MM_SERVICE)
    return (
        v2_handler(
            instance, internal=True, methods=_short_names(_V2_SERVICE), access_log=access_log
        ),
        grpc.method_handlers_generic_handler(
            _MM_SERVICE, {name: h for name, h in mesh_methods.items() if name in wanted}
        ),
    )


async def _refuse(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
    # Streamed and undeserialized: the body is never read, let alone parsed.
    exc = UnauthenticatedError(_REFUSAL)
    await context.abort(
        status.grpc_code(exc), str(exc), trailing_metadata=status.error_trailers(exc)
    )


_REFUSE = grpc.stream_unary_rpc_method_handler(_refuse)


class InternalPortGuard:
    """Refuses, with UNAUTHENTICATED and before any handler runs, every call
    that does not carry the mesh secret's token.

    A ``grpc.aio.ServerInterceptor`` by registration, like the auth
    interceptor (grpc ships no type information).
    """

    def __init__(self, *, secret: MeshSecret, on_denied: DeniedHook | None = None) -> None:
        """``on_denied`` is told of each refusal."""
        self._secret = secret
        self._on_denied = on_denied

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        presented = next(
            (
                value
                for key, value in handler_call_details.invocation_metadata or ()
                if key == MESH_AUTH_HEADER
            ),
            None,
        )
        if self._secret.admits(presented):
            handler: grpc.RpcMethodHandler | None = await continuation(handler_call_details)
            return handler
        if self._on_denied is not None:
            method: str = handler_call_details.method
            # Callers choose method names: count unknown ones under one label.
            self._on_denied("unauthenticated", method if method in PEER_METHODS else "(other)")
        return _REFUSE


grpc.aio.ServerInterceptor.register(InternalPortGuard)


async def secret_from_store(store: Store) -> MeshSecret:
    """The secret kept in the store, created there by the first instance
    (create-if-absent, so instances starting together agree on one)."""
    for _ in range(3):
        found = await store.get(MESH_SECRET_KEY)
        if found is not None:
            return MeshSecret(found.value.decode(errors="replace"), source="the store's secret")
        created = new_mesh_secret_text()
        if (
            await store.put_if(MESH_SECRET_KEY, created.encode(), expected_mod_revision=0)
            is not None
        ):
            log.info("created the mesh secret in the store")
            return MeshSecret(created, source="a new secret")
    raise UnavailableError(f"the store's {MESH_SECRET_KEY} keeps changing")  # pragma: no cover
