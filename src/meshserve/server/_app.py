"""One instance process: store, registry, runtime, instance and front ends.

``serve_instance`` wires the layers together for ``meshserve up`` (and, with
the mesh, ``meshserve instance``) and runs until asked to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import yaml
from starlette.types import ASGIApp

from meshserve.controller import Controller, ResourceStore, RuntimePools, SealedSecrets
from meshserve.errors import MeshServeError, PreconditionFailedError
from meshserve.mesh import Instance
from meshserve.metrics import Metrics
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from meshserve.protocol.peer import PeerClient
from meshserve.protocol.service import v2_handler
from meshserve.registry import Registry
from meshserve.runtime import (
    CommandRuntime,
    ExternalRuntime,
    InProcessRuntime,
    ProcessRuntime,
    Runtime,
    runtime_user,
    supported_model_types,
)
from meshserve.security import (
    Authenticator,
    MeshSecret,
    certificate_date_problem,
    grpc_channel_credentials,
    grpc_server_credentials,
    load_sealing_key,
    rate_limiter,
    rest_ssl_context,
)
from meshserve.server._auth import GrpcAuthInterceptor, RestAuthMiddleware
from meshserve.server._budget import DecodeBudget
from meshserve.server._data_dir import prepare_data_dir
from meshserve.server._grpc_guard import RequestDecodingInterceptor
from meshserve.server._grpc_management import AdminService, ModelMeshService
from meshserve.server._internal_port import (
    InternalPortGuard,
    internal_handlers,
    secret_from_store,
)
from meshserve.server._limits import (
    GrpcDecodeBudgetInterceptor,
    GrpcRateLimitInterceptor,
    RestRateLimitMiddleware,
    grpc_connection_options,
    rest_connection_limits,
)
from meshserve.server._metrics_http import MetricsServer, start_metrics_server
from meshserve.server._ports import address, rest_base_url, write_endpoints_file
from meshserve.server._rest import RestServer, create_rest_app
from meshserve.settings import Settings, StoreSettings, TlsSettings
from meshserve.storage import LocalRoots, Puller, PullProgress
from meshserve.store import EtcdSettings, PrefixedStore, SqliteStore, Store

__all__ = [
    "Endpoints",
    "ModelEntry",
    "etcd_settings",
    "instance_labels",
    "load_register_file",
    "open_store",
    "serve_instance",
    "store_url",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model listed in a ``--register`` file."""

    name: str
    type: str
    path: str
    key: str = ""
    load_now: bool = False


def load_register_file(path: pathlib.Path) -> list[ModelEntry]:
    """Read ``models: [{name, type, path[, key, loadNow]}]``; relative paths
    are taken from the file's directory."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ValueError(f"{path}: expected a mapping with a 'models' list")
    entries = []
    for index, item in enumerate(data.get("models", [])):
        if not isinstance(item, dict) or not {"name", "type", "path"} <= item.keys():
            raise ValueError(f"{path}: models[{index}] needs name, type and path")
        model_path = pathlib.Path(str(item["path"]))
        if not model_path.is_absolute():
            model_path = (path.parent / model_path).resolve()
        entries.append(
            ModelEntry(
                name=str(item["name"]),
                type=str(item["type"]),
                path=str(model_path),
                key=str(item.get("key", "")),
                load_now=bool(item.get("loadNow", item.get("load_now", False))),
            )
        )
    return entries


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where an instance answers; written to ``<data-dir>/endpoints.json``."""

    instance_id: str
    grpc: str
    rest: str | None
    internal: str = ""
    """The internal port other instances forward to (it serves only them:
    see ``server._internal_port``)."""
    own_grpc: str = ""
    """When ``grpc`` is shared with other instances: a public gRPC address
    of this instance alone (same services, same checks)."""
    metrics: str | None = None
    pid: int = field(default_factory=os.getpid)

    def entry(self) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "grpc": self.own_grpc or self.grpc,
            "internal": self.internal,
            "rest": self.rest,
            "metrics": self.metrics,
            "pid": self.pid,
        }

    store: str = ""
    """The store's URL, for the CLI and for children that must share it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "grpc": self.grpc,
            "rest": self.rest,
            "pid": self.pid,
            "store": self.store,
            "instances": [self.entry()],
        }


def _make_runtime(settings: Settings, on_restart: Callable[[], Any]) -> Runtime:
    runtime = settings.runtime
    if runtime.host == "process":
        return ProcessRuntime(settings=runtime, on_restart=on_restart)
    if runtime.host == "external":
        if not runtime.external_address:
            raise ValueError("runtime.host external needs runtime.externalAddress")
        # The runtime comes back empty after a loss: reload like a restart.
        reach: dict[str, Any] = {
            "address": runtime.external_address,
            "data_address": runtime.external_data_address or None,
            "start_timeout_s": runtime.start_timeout_s,
            "on_reconnect": on_restart,
        }
        if not runtime.command:
            return ExternalRuntime(**reach)
        return CommandRuntime(
            command=runtime.command,
            env=runtime.command_env,
            log_path=settings.data_dir / "runtime.log",
            run_as_user=runtime.run_as_user,
            restart_backoff_initial_s=runtime.restart_backoff_initial_s,
            restart_backoff_max_s=runtime.restart_backoff_max_s,
            stop_grace_s=runtime.stop_grace_s,
            **reach,
        )
    return InProcessRuntime(settings=runtime)


def etcd_settings(settings: StoreSettings) -> EtcdSettings:
    """The etcd connection ``store.url`` (``etcd://h:p[,h:p]``) and friends describe."""
    endpoints = tuple(e for e in settings.url.removeprefix("etcd://").split(",") if e)
    password = settings.etcd_password.get_secret_value()
    return EtcdSettings(
        endpoints=endpoints,
        username=settings.etcd_user or None,
        password=password if settings.etcd_user else None,
        ca_cert=settings.etcd_ca or None,
        cert_chain=settings.etcd_cert or None,
        cert_key=settings.etcd_key or None,
        request_timeout=settings.etcd_request_timeout_s,
        connect_timeout=settings.etcd_connect_timeout_s,
    )


def store_url(settings: Settings) -> str:
    """``store.url``, or the embedded store's ``sqlite:///`` URL (absolute,
    so that other processes find the same file)."""
    if settings.store.url:
        return settings.store.url
    return f"sqlite:///{(settings.data_dir / 'store.db').resolve()}"


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The mesh's store, scoped to ``<root_prefix>/mm/<service_name>/``."""
    url = settings.store.url
    root = settings.store.root_prefix.strip("/")
    prefix = f"{root}/" if root else ""
    scope = f"{prefix}mm/{settings.store.service_name}/"
    if url.startswith("etcd://"):
        try:
            from meshserve.store import EtcdStore
        except ModuleNotFoundError as exc:
            raise PreconditionFailedError(
                f"store url {url!r}: the etcd store needs the etcd extra "
                f"(pip install 'meshserve[etcd]'): {exc}"
            ) from None
        async with EtcdStore.open(etcd_settings(settings.store)) as etcd:
            yield PrefixedStore(etcd, scope)
        return
    if url and not url.startswith("sqlite:///"):
        raise ValueError(f"store url {url!r}: expected sqlite:///PATH or etcd://HOST:PORT[,...]")
    path = pathlib.Path(url.removeprefix("sqlite:///")) if url else settings.data_dir / "store.db"
    async with SqliteStore.open(path) as store:
        yield PrefixedStore(store, scope)


def _grpc_server(
    settings: Settings,
    *,
    reuse_port: bool,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> grpc.aio.Server:
    limit = settings.server.grpc_max_message_size_bytes
    return grpc.aio.server(
        # Last, so that handlers decode their requests after every check.
        interceptors=[*interceptors, RequestDecodingInterceptor()],
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # Off unless instances share the port on purpose: otherwise a
            # second server would silently take half the traffic.
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            *grpc_connection_options(settings.server),
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


def _add_services(server: grpc.aio.Server, instance: Instance, *, resources: ResourceStore) -> None:
    server.add_generic_rpc_handlers((v2_handler(instance),))
    mm_grpc.add_ModelMeshServicer_to_server(ModelMeshService(instance), server)
    admin_grpc.add_AdminServicer_to_server(AdminService(instance, resources=resources), server)


def instance_labels(settings: Settings) -> tuple[str, ...]:
    """What this instance offers placement: its runtime and its formats (an
    external runtime's formats are unknown here: give them as mesh.labels)."""
    builtin = settings.runtime.host != "external"
    formats = tuple(f"mt:{t}" for t in supported_model_types()) if builtin else ()
    return (f"rt:{settings.mesh.runtime_name}", *formats, *settings.mesh.labels)


async def serve_instance(
    settings: Settings,
    *,
    register: list[ModelEntry] | None = None,
    stop: asyncio.Event,
    on_ready: Callable[[Endpoints], None] | None = None,
    pools: RuntimePools | None = None,
) -> None:
    """Run one instance until ``stop`` is set, then drain and leave the mesh.

    With ``pools``, this instance's controller (when elected) also sizes
    the runtime pools they run."""
    prepare_data_dir(settings.data_dir, runtime_user=runtime_user(settings.runtime))
    instance_id = settings.mesh.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    holder: dict[str, Instance] = {}
    # Unseals the storage-config Secrets pulls read, and seals those applied
    # (None: they cannot be).
    sealing_key = load_sealing_key(settings.security, data_dir=settings.data_dir)

    async def on_restart() -> None:
        if "instance" in holder:
            await holder["instance"].on_runtime_restart()

    metrics = Metrics()
    tls = settings.tls
    if tls is not None:
        _warn_if_out_of_date(tls)
    # The internal port serves only callers holding the mesh secret, and with
    # TLS only over mutual TLS as well.
    secret = await _mesh_secret(settings)
    peers = PeerClient(
        max_message_bytes=settings.server.grpc_max_message_size_bytes,
        timeout_s=settings.mesh.forward_timeout_s,
        mesh_token=secret.token,
        credentials=grpc_channel_credentials(tls) if tls is not None else None,
    )
    internal = _grpc_server(
        settings,
        reuse_port=False,
        interceptors=[InternalPortGuard(secret=secret, on_denied=metrics.auth_denied)],
    )
    internal_address = address(
        settings.mesh.internal_host,
        _bind(
            internal,
            settings.mesh.internal_host,
            settings.mesh.internal_port,
            credentials=grpc_server_credentials(tls.for_mesh_links()) if tls else None,
        ),
    )
    # Callers of the public ports prove who they are when auth is on; the
    # internal port's callers prove they are instances of this mesh instead.
    authenticator = Authenticator.from_settings(settings.auth) if settings.auth.enabled else None
    interceptors: list[grpc.aio.ServerInterceptor] = (
        [GrpcAuthInterceptor(authenticator=authenticator, on_denied=metrics.auth_denied)]
        if authenticator is not None
        else []
    )
    # After auth (inside it), so that callers are counted by principal.
    limiter = rate_limiter(settings.limits, on_limited=lambda: metrics.limit_rejected("rate"))
    if limiter is not None:
        interceptors.append(GrpcRateLimitInterceptor(limiter=limiter))
    # Bytes of request bodies held at once, on both public ports.
    budget = DecodeBudget(
        limit_bytes=settings.server.max_inflight_decode_bytes,
        on_refused=lambda: metrics.limit_rejected("inflight_bytes"),
    )
    interceptors.append(GrpcDecodeBudgetInterceptor(budget=budget))
    public = _grpc_server(
        settings, reuse_port=settings.server.share_ports, interceptors=interceptors
    )
    grpc_port = _bind(
        public,
        settings.server.host,
        settings.server.grpc_port,
        credentials=grpc_server_credentials(tls) if tls is not None else None,
    )
    # Sharing its port, an instance also listens on one of its own, so that
    # it can be addressed alone (SO_REUSEPORT picks an instance at random).
    own_grpc_port = (
        _bind(
            public,
            settings.server.host,
            0,
            credentials=grpc_server_credentials(tls) if tls is not None else None,
        )
        if settings.server.share_ports
        else None
    )
    metrics_server: MetricsServer | None = None
    rest: RestServer | None = None

    def on_pull_progress(progress: PullProgress) -> None:
        if "instance" in holder:
            holder["instance"].on_pull_progress(progress)

    try:
        async with (
            open_store(settings) as store,
            Registry.open(store) as registry,
            Puller(
                settings=settings.storage,
                data_dir=settings.data_dir,
                secrets=SealedSecrets(ResourceStore(store), sealing_key=sealing_key),
                progress=on_pull_progress,
                local_roots=LocalRoots.from_settings(
                    settings.storage, auth_enabled=settings.auth.enabled
                ),
            ) as puller,
            _make_runtime(settings, on_restart) as runtime,
            Instance.open(
                instance_id=instance_id,
                registry=registry,
                runtime=runtime,
                settings=settings.cache,
                mesh=settings.mesh,
                address=internal_address,
                labels=instance_labels(settings),
                peers=peers,
                metrics=metrics,
                puller=puller,
                limits=settings.limits,
            ) as instance,
        ):
            holder["instance"] = instance
            # `meshserve apply` writes through the admin API: Secrets are
            # sealed here, with this instance's key.
            resources = ResourceStore(store, sealing_key=sealing_key)
            internal.add_generic_rpc_handlers(internal_handlers(instance))
            await internal.start()
            _add_services(public, instance, resources=resources)
            await public.start()
            rest_url = None
            if settings.server.rest_enabled:
                app: ASGIApp = create_rest_app(
                    backend=instance,
                    max_message_bytes=settings.server.grpc_max_message_size_bytes,
                    budget=budget,
                    offload_bytes=settings.server.offload_decode_bytes,
                )
                if limiter is not None:
                    app = RestRateLimitMiddleware(app, limiter=limiter)
                if authenticator is not None:
                    app = RestAuthMiddleware(
                        app, authenticator=authenticator, on_denied=metrics.auth_denied
                    )
                rest = RestServer(
                    app=app,
                    host=settings.server.host,
                    port=settings.server.rest_port,
                    reuse_port=settings.server.share_ports,
                    ssl_context=rest_ssl_context(tls) if tls is not None else None,
                    limits=rest_connection_limits(settings.server),
                )
                await rest.start()
                rest_url = rest_base_url(settings.server.host, rest.port, tls=tls is not None)
            metrics_url = None
            if settings.metrics.enabled:
                metrics_server = await start_metrics_server(
                    metrics, host=settings.metrics.host, port=settings.metrics.port
                )
                metrics_url = (
                    f"http://{address(settings.metrics.host, metrics_server.port)}/metrics"
                )
            for entry in register or ():
                try:
                    await instance.register_model(
                        entry.name,
                        type=entry.type,
                        path=entry.path,
                        key=entry.key,
                        load_now=entry.load_now,
                    )
                except MeshServeError as exc:
                    log.error("cannot register %s from the register file: %s", entry.name, exc)
            endpoints = Endpoints(
                instance_id=instance_id,
                grpc=address(settings.server.host, grpc_port),
                rest=rest_url,
                internal=internal_address,
                own_grpc=address(settings.server.host, own_grpc_port) if own_grpc_port else "",
                metrics=metrics_url,
                store=store_url(settings),
            )
            write_endpoints_file(settings.data_dir, endpoints.to_json())
            controller = Controller(
                store=store,
                instance=instance,
                grpc_url=endpoints.grpc,
                rest_url=rest_url,
                interval_s=settings.mesh.publish_interval_s,
                control=settings.control,
                pools=pools,
            )
            async with contextlib.AsyncExitStack() as running:
                if settings.control.controller_enabled:
                    await running.enter_async_context(controller.running())
                instance.mark_ready()
                if on_ready is not None:
                    on_ready(endpoints)
                await stop.wait()
            if pools is not None:
                # While this instance still serves, so theirs can drain.
                await pools.close()
            log.info("stopping: draining")
            await instance.drain()
            # New clients go to the other instances sharing the ports; then
            # the others stop routing here, and only then does the internal
            # port close.
            await public.stop(settings.server.grace_period_s)
            if rest is not None:
                await rest.stop()
            await instance.leave()
            await asyncio.sleep(_LEAVE_SETTLE_S)
            await internal.stop(settings.server.grace_period_s)
    finally:
        await public.stop(None)
        await internal.stop(None)
        if rest is not None:
            await rest.stop()
        if metrics_server is not None:
            await metrics_server.stop()
        await peers.close()


async def _mesh_secret(settings: Settings) -> MeshSecret:
    """``mesh.secretFile``'s secret, else the one the store keeps."""
    if settings.mesh.secret_file is not None:
        return MeshSecret.from_file(settings.mesh.secret_file)
    async with open_store(settings) as store:
        return await secret_from_store(store)


def _warn_if_out_of_date(tls: TlsSettings) -> None:
    problem = certificate_date_problem(tls.cert_file)
    if problem is not None:
        log.warning("%s: clients will refuse this server's TLS handshakes", problem)


# Time for the other instances' watches to see this one leave before its
# internal port closes (a forward already on its way still lands).
_LEAVE_SETTLE_S = 0.3
