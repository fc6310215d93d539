"""The instance's gRPC servers: the internal port other instances forward
to, and the public port clients call (v2 inference, ModelMesh management,
the admin API). Built and bound before the instance exists, so that its
address is known; started once it serves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import grpc
import grpc.aio

from meshserve.controller import ResourceStore
from meshserve.mesh import Instance
from meshserve.metrics import Metrics
from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2_pb
from meshserve.protocol._pb import meshserve_admin_pb2 as admin_pb
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2 as mm_pb
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from meshserve.protocol.access_log import AccessLog
from meshserve.protocol.data_link import DataLinks
from meshserve.protocol.peer import PeerClient
from meshserve.protocol.service import v2_handler
from meshserve.security import (
    MeshSecret,
    caller_namespace,
    grpc_channel_credentials,
    grpc_server_credentials,
    mesh_client_ssl_context,
)
from meshserve.server._grpc_guard import GuardInterceptor, RequestDecodingInterceptor
from meshserve.server._grpc_health import HEALTH_SERVICE, HealthService
from meshserve.server._grpc_management import AdminService, ModelMeshService
from meshserve.server._grpc_reflection import enable_reflection
from meshserve.server._internal_port import InternalPortGuard, internal_handlers
from meshserve.server._limits import grpc_connection_options
from meshserve.server._listeners import listening_sockets, stop_listening
from meshserve.server._ports import address
from meshserve.server._public_guards import PublicGuards
from meshserve.settings import Settings

__all__ = ["InternalPort", "PublicPort", "peer_client"]

log = logging.getLogger(__name__)


def peer_client(settings: Settings, *, secret: MeshSecret) -> PeerClient:
    """How this instance forwards to the others' internal ports (and, with
    ``mesh.dataPlane``, inference to their data ports)."""
    tls = settings.tls
    max_message_bytes = settings.server.grpc_max_message_size_bytes
    timeout_s = settings.mesh.forward_timeout_s
    data_links = None
    if settings.mesh.data_plane:
        data_links = DataLinks(
            max_message_bytes=max_message_bytes,
            timeout_s=timeout_s,
            mesh_token=secret.token,
            ssl_context=mesh_client_ssl_context(tls) if tls is not None else None,
            handshake_timeout_s=settings.mesh.data_handshake_timeout_s,
            retry_s=settings.mesh.peer_retry_s,
        )
    return PeerClient(
        max_message_bytes=max_message_bytes,
        timeout_s=timeout_s,
        mesh_token=secret.token,
        credentials=grpc_channel_credentials(tls) if tls is not None else None,
        data_links=data_links,
    )


@dataclass(frozen=True, slots=True)
class InternalPort:
    """Serves only callers holding the mesh secret, and with TLS only over
    mutual TLS as well."""

    server: grpc.aio.Server
    address: str

    @classmethod
    def bind(cls, settings: Settings, *, secret: MeshSecret, metrics: Metrics) -> InternalPort:
        tls = settings.tls
        server = _grpc_server(
            settings,
            reuse_port=False,
            interceptors=[InternalPortGuard(secret=secret, on_denied=metrics.auth_denied)],
        )
        host = settings.mesh.internal_host
        port = _bind(
            server,
            host,
            settings.mesh.internal_port,
            credentials=grpc_server_credentials(tls.for_mesh_links()) if tls else None,
        )
        return cls(server=server, address=address(host, port))

    async def start(self, instance: Instance, *, access_log: AccessLog | None = None) -> None:
        self.server.add_generic_rpc_handlers(internal_handlers(instance, access_log=access_log))
        await self.server.start()


@dataclass(frozen=True, slots=True)
class PublicPort:
    """The port clients call, behind the public guards; beside its APIs it
    serves gRPC health and (``server.grpcReflection``) reflection."""

    server: grpc.aio.Server
    port: int
    own_port: int | None
    """With ``server.sharePorts``: a port of this instance alone, so that it
    can be addressed alone (SO_REUSEPORT picks an instance at random)."""
    namespace: str | None = None
    """A port of ``server.namespacePorts``: plain model names mean this
    namespace's, and only v2 inference is served."""
    reflection: bool = True
    shared_listeners: frozenset[str] = frozenset()
    """With ``server.sharePorts``: this instance's listening sockets on the
    shared port (see :meth:`stop_accepting_shared`)."""

    @classmethod
    def bind(
        cls, settings: Settings, *, guards: PublicGuards, namespace: str | None = None
    ) -> PublicPort:
        """The main public port, or with ``namespace`` that namespace's
        port of ``server.namespacePorts``."""
        tls = settings.tls
        share = settings.server.share_ports
        server = _grpc_server(settings, reuse_port=share, interceptors=guards.grpc_interceptors())
        host = settings.server.host
        reflection = settings.server.grpc_reflection

        def credentials() -> grpc.ServerCredentials | None:
            # One set per port: each watches the certificate files on its own.
            return grpc_server_credentials(tls) if tls is not None else None

        requested = (
            settings.server.grpc_port
            if namespace is None
            else settings.server.namespace_ports[namespace]
        )
        # Another server of this process may listen there too (tests do).
        before = listening_sockets(requested) if share and requested else frozenset()
        port = _bind(server, host, requested, credentials=credentials())
        shared = listening_sockets(port) - before if share else frozenset()
        # The main port's own address beside the shared one (a namespace
        # port has none).
        own = share and namespace is None
        own_port = _bind(server, host, 0, credentials=credentials()) if own else None
        return cls(
            server=server,
            port=port,
            own_port=own_port,
            namespace=namespace,
            reflection=reflection,
            shared_listeners=shared,
        )

    def stop_accepting_shared(self) -> None:
        """Take this instance out of the shared port: new connections go to
        the other instances, this one's connections are still served (they
        move when their age is up: :func:`grpc_connection_options`)."""
        if self.shared_listeners:
            log.info(
                "stopping: handing port %d over to the instances sharing it "
                "(grpc logs 'Closing acceptor' for it next)",
                self.port,
            )
            stop_listening(self.shared_listeners)

    async def start(
        self,
        instance: Instance,
        *,
        resources: ResourceStore,
        access_log: AccessLog | None = None,
    ) -> None:
        namespace = self.namespace
        if namespace is not None:
            # A grpc server cannot tell which of its ports a call came in
            # on, hence a server per namespace port.
            self.server.add_generic_rpc_handlers(
                (v2_handler(instance, default_namespace=lambda: namespace, access_log=access_log),)
            )
            self._add_introspection(instance, modules=(v2_pb,))
            await self.server.start()
            return
        self.server.add_generic_rpc_handlers(
            (v2_handler(instance, default_namespace=caller_namespace, access_log=access_log),)
        )
        mm_grpc.add_ModelMeshServicer_to_server(ModelMeshService(instance), self.server)
        admin_grpc.add_AdminServicer_to_server(
            AdminService(instance, resources=resources), self.server
        )
        self._add_introspection(instance, modules=(v2_pb, mm_pb, admin_pb))
        await self.server.start()

    def _add_introspection(self, instance: Instance, *, modules: Sequence[ModuleType]) -> None:
        """Health for the services of ``modules`` (the port's), read live
        from the instance's readiness; reflection unless turned off."""
        services = [
            service.full_name
            for module in modules
            for service in module.DESCRIPTOR.services_by_name.values()
        ]
        HealthService(ready=instance.server_ready, services=services).add_to(self.server)
        if self.reflection:
            enable_reflection(self.server, services=[*services, HEALTH_SERVICE], modules=modules)


def _grpc_server(
    settings: Settings,
    *,
    reuse_port: bool,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> grpc.aio.Server:
    limit = settings.server.grpc_max_message_size_bytes
    if not interceptors or not isinstance(interceptors[-1], GuardInterceptor):
        # Last, so that handlers decode their requests after every check
        # (a GuardInterceptor has them do so after its own checks).
        interceptors = [*interceptors, RequestDecodingInterceptor()]
    return grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Off unless instances share the port on purpose: otherwise a
            # second server would silently take half the traffic.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            *grpc_connection_options(settings.server, shared=reuse_port),
        ],
    )


def _bind(
    server: grpc.aio.Server,
    host: str,
    port: int,
    *,
    credentials: grpc.ServerCredentials | None = None,
) -> int:
    target = address(host, port)
    bound: int = (
        server.add_insecure_port(target)
        if credentials is None
        else server.add_secure_port(target, credentials)
    )
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {target}")
    return bound
