"""One instance process: its lifecycle, from start to a drained stop.

``serve_instance`` runs an instance for ``meshserve up`` (and, with the
mesh, ``meshserve instance``) until asked to stop::

    bind the ports (FrontEnds.bind)
    open the store, registry, puller, runtime, instance (open_instance_stack)
    start the ports, register the --register file's models, write endpoints.json
    serve: the controller (when elected), ready, until ``stop`` is set
    leave: lame duck (not ready at once, still serving, for server.lameDuckS
           or until ``hurry`` is set; the controller steps down), close the
           pools, drain, stop the public ports, leave the mesh, stop the
           internal port
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from meshserve import _log_context
from meshserve.controller import Controller, RuntimePools
from meshserve.metrics import Metrics
from meshserve.runtime import runtime_user
from meshserve.security import MeshSecret, certificate_date_problem, load_sealing_key
from meshserve.server._data_dir import prepare_data_dir
from meshserve.server._endpoints import Endpoints
from meshserve.server._front_ends import FrontEnds
from meshserve.server._grpc_ports import peer_client
from meshserve.server._instance_stack import InstanceStack, open_instance_stack, own_instance_id
from meshserve.server._internal_port import secret_from_store
from meshserve.server._ports import write_endpoints_file
from meshserve.server._register_file import ModelEntry, register_models
from meshserve.settings import Settings, TlsSettings
from meshserve.storage import LocalRoots
from meshserve.store import open_store, store_url
from meshserve.tracing import traced

__all__ = ["serve_instance"]

log = logging.getLogger(__name__)


async def serve_instance(
    settings: Settings,
    *,
    register: list[ModelEntry] | None = None,
    stop: asyncio.Event,
    hurry: asyncio.Event | None = None,
    hand_over: asyncio.Event | None = None,
    on_ready: Callable[[Endpoints], None] | None = None,
    pools: RuntimePools | None = None,
) -> None:
    """Run one instance until ``stop`` is set, then go lame duck, drain and
    leave the mesh. ``hurry`` (set by SIGINT or a second signal, before or
    during the lame duck) ends the lame duck early; the drain still runs.
    ``hand_over`` set with ``stop``: other instances stay on the shared
    ports, so this one stops accepting there when its lame duck starts.

    With ``pools``, this instance's controller (when elected) also sizes
    the runtime pools they run."""
    instance_id = own_instance_id(settings)
    _log_context.set_instance(instance_id)
    with traced(
        enabled=settings.tracing.enabled,
        service_name=settings.tracing.service_name,
        instance_id=instance_id,
    ):
        await _serve_instance(
            settings,
            instance_id=instance_id,
            register=register,
            stop=stop,
            hurry=hurry,
            hand_over=hand_over,
            on_ready=on_ready,
            pools=pools,
        )


async def _serve_instance(
    settings: Settings,
    *,
    instance_id: str,
    register: list[ModelEntry] | None,
    stop: asyncio.Event,
    hurry: asyncio.Event | None,
    hand_over: asyncio.Event | None,
    on_ready: Callable[[Endpoints], None] | None,
    pools: RuntimePools | None,
) -> None:
    prepare_data_dir(settings.data_dir, runtime_user=runtime_user(settings.runtime))
    sealing_key = load_sealing_key(settings.security, data_dir=settings.data_dir)
    metrics = Metrics(per_model=settings.metrics.per_model)
    if settings.tls is not None:
        _warn_if_out_of_date(settings.tls)
    # The internal port serves only callers holding the mesh secret, and with
    # TLS only over mutual TLS as well.
    secret = await _mesh_secret(settings)
    peers = peer_client(settings, secret=secret)
    fronts = FrontEnds.bind(settings, secret=secret, metrics=metrics)
    try:
        async with open_instance_stack(
            settings,
            instance_id=instance_id,
            address=fronts.internal.address,
            data_address=fronts.data.address if fronts.data is not None else "",
            peers=peers,
            metrics=metrics,
            sealing_key=sealing_key,
        ) as stack:
            await fronts.start(stack.instance, resources=stack.resources)
            await register_models(stack.instance, register or ())
            endpoints = fronts.endpoints(instance_id=instance_id, store=store_url(settings))
            write_endpoints_file(settings.data_dir, endpoints.to_json())
            await _serve(
                settings,
                stack,
                fronts=fronts,
                endpoints=endpoints,
                stop=stop,
                hurry=hurry,
                hand_over=hand_over,
                on_ready=on_ready,
                pools=pools,
            )
            await _leave(stack, fronts=fronts, pools=pools)
    finally:
        await fronts.close()
        await peers.close()


async def _serve(
    settings: Settings,
    stack: InstanceStack,
    *,
    fronts: FrontEnds,
    endpoints: Endpoints,
    stop: asyncio.Event,
    hurry: asyncio.Event | None,
    hand_over: asyncio.Event | None,
    on_ready: Callable[[Endpoints], None] | None,
    pools: RuntimePools | None,
) -> None:
    """Serve, with the controller running when enabled, until ``stop``;
    then the lame duck, from its start (the controller steps down then)."""
    controller = Controller(
        store=stack.store,
        mesh=stack.instance,
        candidate_id=stack.instance.instance_id,
        lease_ttl_s=settings.mesh.lease_ttl_s,
        grpc_url=endpoints.grpc,
        namespace_grpc_urls=endpoints.namespaces,
        rest_url=endpoints.rest,
        interval_s=settings.mesh.publish_interval_s,
        control=settings.control,
        pools=pools,
        local_roots=LocalRoots.for_resources(settings.storage),
    )
    async with contextlib.AsyncExitStack() as running:
        if settings.control.controller_enabled:
            await running.enter_async_context(controller.running())
        stack.instance.mark_ready()
        if on_ready is not None:
            on_ready(endpoints)
        await stop.wait()
        # Not ready at once, before the controller steps down.
        ends = await _begin_lame_duck(stack, lame_duck_s=settings.server.lame_duck_s, hurry=hurry)
    if hand_over is not None and hand_over.is_set():
        # The clients' connections move to the others as they age out.
        await fronts.stop_accepting_shared()
    await _lame_duck(ends, hurry=hurry)


async def _leave(
    stack: InstanceStack,
    *,
    fronts: FrontEnds,
    pools: RuntimePools | None,
) -> None:
    """After the lame duck, stop serving without failing a call: see the
    module docstring."""
    if pools is not None:
        # While this instance still serves, so theirs can drain.
        await pools.close()
    log.info("stopping: draining")
    await stack.instance.drain()
    # New clients go to the other instances sharing the ports; then the
    # others stop routing here, and only then does the internal port close.
    await fronts.stop_public()
    await stack.instance.leave()
    await asyncio.sleep(_LEAVE_SETTLE_S)
    await fronts.stop_internal()


async def _begin_lame_duck(
    stack: InstanceStack, *, lame_duck_s: float, hurry: asyncio.Event | None
) -> float:
    """Report not ready and tell the mesh; the loop's time the lame duck ends."""
    if hurry is not None and hurry.is_set():
        lame_duck_s = 0
        log.info("stopping: not ready; no lame duck (SIGINT)")
    elif lame_duck_s:
        log.info("stopping: not ready, still serving for up to %g s (lame duck)", lame_duck_s)
    else:
        log.info("stopping: not ready; no lame duck (server.lameDuckS is 0)")
    await stack.instance.lame_duck()
    return asyncio.get_running_loop().time() + lame_duck_s


async def _lame_duck(ends: float, *, hurry: asyncio.Event | None) -> None:
    """Wait out the lame duck: until the loop's time ``ends``, or until
    ``hurry`` is set."""
    seconds = ends - asyncio.get_running_loop().time()
    if seconds <= 0 or (hurry is not None and hurry.is_set()):
        return
    if hurry is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(hurry.wait(), timeout=seconds)
    except TimeoutError:
        return
    log.info("stopping: lame duck ended early (a second signal)")


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
