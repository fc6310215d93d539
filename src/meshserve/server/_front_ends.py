"""The ports of one instance, in the order they open and close.

Bound before the instance exists (:meth:`FrontEnds.bind`: the internal
address goes into the instance's record), started once it serves
(:meth:`FrontEnds.start`), and stopped in the order a drain needs: the
public ports first (:meth:`stop_public`), the internal ports (gRPC and the
data port) once the other instances stop routing here (:meth:`stop_internal`). :meth:`close` stops
whatever is still open, whatever happened.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshserve._clock import SystemClock
from meshserve.controller import ResourceStore
from meshserve.mesh import Instance
from meshserve.metrics import Metrics
from meshserve.protocol.access_log import AccessLog
from meshserve.protocol.service import forwarded_infer
from meshserve.security import MeshSecret, rest_ssl_context
from meshserve.server._data_port import DataPort
from meshserve.server._endpoints import Endpoints
from meshserve.server._grpc_ports import InternalPort, PublicPort
from meshserve.server._limits import rest_connection_limits
from meshserve.server._metrics_http import (
    MetricsServer,
    metrics_ssl_context,
    start_metrics_server,
)
from meshserve.server._ports import address, rest_base_url
from meshserve.server._public_guards import PublicGuards
from meshserve.server._rest import RestServer, create_rest_app
from meshserve.server._status_page import status_routes
from meshserve.settings import Settings

__all__ = ["FrontEnds"]


class FrontEnds:
    """See the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics,
        guards: PublicGuards,
        internal: InternalPort,
        public: PublicPort,
        namespace_ports: Sequence[PublicPort] = (),
        data: DataPort | None = None,
    ) -> None:
        """``data``: the data port (None: ``mesh.dataPlane`` is off)."""
        self._settings = settings
        self._metrics = metrics
        self._guards = guards
        self.internal = internal
        self.data = data
        self.public = public
        self.namespace_ports = tuple(namespace_ports)
        self._rest: RestServer | None = None
        self._metrics_server: MetricsServer | None = None

    @classmethod
    def bind(cls, settings: Settings, *, secret: MeshSecret, metrics: Metrics) -> FrontEnds:
        """Bind the gRPC ports (serving nothing yet)."""
        internal = InternalPort.bind(settings, secret=secret, metrics=metrics)
        data = _bind_data_port(settings, secret=secret, metrics=metrics)
        guards = PublicGuards.from_settings(settings, metrics=metrics)
        public = PublicPort.bind(settings, guards=guards)
        namespace_ports = [
            PublicPort.bind(settings, guards=guards, namespace=namespace)
            for namespace in settings.server.namespace_ports
        ]
        return cls(
            settings,
            metrics=metrics,
            guards=guards,
            internal=internal,
            public=public,
            namespace_ports=namespace_ports,
            data=data,
        )

    async def start(self, instance: Instance, *, resources: ResourceStore) -> None:
        """Serve ``instance`` on every port the settings ask for."""
        access_log = (
            AccessLog(instance_id=instance.instance_id)
            if self._settings.server.access_logging
            else None
        )
        await self.internal.start(instance, access_log=access_log)
        if self.data is not None:
            await self.data.start(forwarded_infer(instance, access_log=access_log))
        for public in (self.public, *self.namespace_ports):
            await public.start(instance, resources=resources, access_log=access_log)
        if self._settings.server.rest_enabled:
            self._rest = self._rest_server(instance, resources=resources, access_log=access_log)
            await self._rest.start()
        metrics = self._settings.metrics
        if metrics.enabled:
            self._metrics_server = await start_metrics_server(
                self._metrics,
                host=metrics.host,
                port=metrics.port,
                ssl_context=metrics_ssl_context(self._settings),
            )

    def endpoints(self, *, instance_id: str, store: str) -> Endpoints:
        """Where the started ports answer."""
        server = self._settings.server
        tls = self._settings.tls is not None
        rest = self._rest
        metrics = self._metrics_server
        return Endpoints(
            instance_id=instance_id,
            grpc=address(server.host, self.public.port),
            rest=rest_base_url(server.host, rest.port, tls=tls) if rest is not None else None,
            internal=self.internal.address,
            data=self.data.address if self.data is not None else "",
            own_grpc=address(server.host, self.public.own_port) if self.public.own_port else "",
            metrics=(
                f"{self._settings.metrics.scheme}://"
                f"{address(self._settings.metrics.host, metrics.port)}/metrics"
                if metrics is not None
                else None
            ),
            store=store,
            namespaces={
                port.namespace: address(server.host, port.port)
                for port in self.namespace_ports
                if port.namespace is not None
            },
        )

    async def stop_accepting_shared(self) -> None:
        """Leave the shared ports (``server.sharePorts``) to the other
        instances: new connections go there, this one's are still served."""
        for public in (self.public, *self.namespace_ports):
            public.stop_accepting_shared()
        if self._rest is not None and self._settings.server.share_ports:
            await self._rest.stop_accepting()

    async def stop_public(self) -> None:
        """Stop taking clients, letting calls in progress finish."""
        for public in (self.public, *self.namespace_ports):
            await public.server.stop(self._settings.server.grace_period_s)
        if self._rest is not None:
            await self._rest.stop()

    async def stop_internal(self) -> None:
        grace_s = self._settings.server.grace_period_s
        if self.data is not None:
            await self.data.stop(grace_s)
        await self.internal.server.stop(grace_s)

    async def close(self) -> None:
        """Stop every port now (each stop is safe to repeat)."""
        for public in (self.public, *self.namespace_ports):
            await public.server.stop(None)
        await self.internal.server.stop(None)
        if self.data is not None:
            await self.data.stop(None)
        if self._rest is not None:
            await self._rest.stop()
        if self._metrics_server is not None:
            await self._metrics_server.stop()

    def _rest_server(
        self, instance: Instance, *, resources: ResourceStore, access_log: AccessLog | None
    ) -> RestServer:
        settings = self._settings
        status = status_routes(
            instance,
            resources,
            rows=settings.server.status_rows,
            refresh_s=settings.server.status_refresh_s,
            clock=SystemClock(),
        )
        app = create_rest_app(
            backend=instance,
            max_message_bytes=settings.server.grpc_max_message_size_bytes,
            budget=self._guards.budget,
            offload_bytes=settings.server.offload_decode_bytes,
            access_log=access_log,
            extra_routes=status,
        )
        tls = settings.tls
        return RestServer(
            app=self._guards.wrap_rest(app),
            host=settings.server.host,
            port=settings.server.rest_port,
            reuse_port=settings.server.share_ports,
            ssl_context=rest_ssl_context(tls) if tls is not None else None,
            limits=rest_connection_limits(settings.server),
        )


def _bind_data_port(settings: Settings, *, secret: MeshSecret, metrics: Metrics) -> DataPort | None:
    """The data port, guarded like the internal port (None: ``mesh.dataPlane`` off)."""
    mesh = settings.mesh
    if not mesh.data_plane:
        return None
    tls = settings.tls
    return DataPort.bind(
        host=mesh.internal_host,
        port=mesh.data_port,
        secret=secret,
        max_message_bytes=settings.server.grpc_max_message_size_bytes,
        handshake_timeout_s=mesh.data_handshake_timeout_s,
        # Mutual TLS from the same files as the internal port's.
        ssl_context=rest_ssl_context(tls.for_mesh_links()) if tls is not None else None,
        on_denied=metrics.auth_denied,
    )
