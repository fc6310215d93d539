"""``meshserve up --instances N``: N instance processes on one machine.

Each instance is a ``meshserve instance`` child with its own data dir,
runtime, internal port and metrics port; all of them share the public gRPC
and REST ports (SO_REUSEPORT), so clients see one address. They coordinate
through etcd: a private one started here unless ``store.url`` names one. A
child that exits on its own is restarted (with backoff); on stop every child
gets SIGTERM at once (each goes through its own lame duck and drain; a
hurried stop also sends SIGINT, which skips the lame duck), then SIGKILL
after its deadline. Each time ``restart`` is set (``up``: SIGHUP), the
children are restarted one at a time, each listening again before the next
stops: a rolling restart, as Kubernetes does one, that fails no request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from meshserve.errors import UnavailableError
from meshserve.runtime import runtime_user
from meshserve.server import address, prepare_data_dir, rest_base_url, write_endpoints_file
from meshserve.settings import Settings
from meshserve.supervisor._children import InstanceChild, stop_deadline_s
from meshserve.supervisor._local_etcd import local_etcd
from meshserve.supervisor._ports import free_port

__all__ = ["ClusterEndpoints", "run_cluster"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClusterEndpoints:
    grpc: str
    rest: str | None
    store: str
    instances: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "grpc": self.grpc,
            "rest": self.rest,
            "pid": os.getpid(),
            "store": self.store,
            "instances": self.instances,
        }


@contextlib.asynccontextmanager
async def _store_url(settings: Settings) -> AsyncIterator[str]:
    if settings.store.url.startswith("etcd://"):
        yield settings.store.url
        return
    async with local_etcd(settings.data_dir) as url:
        yield url


def _child_settings(
    settings: Settings, *, index: int, store: str, grpc: int, rest: int
) -> Settings:
    metrics_port = settings.metrics.port + index if settings.metrics.port else 0
    return settings.model_copy(
        update={
            "data_dir": settings.data_dir / "instances" / str(index),
            "server": settings.server.model_copy(
                update={"grpc_port": grpc, "rest_port": rest, "share_ports": True}
            ),
            "store": settings.store.model_copy(update={"url": store}),
            "mesh": settings.mesh.model_copy(
                update={
                    "instance_id": settings.mesh.instance_id
                    and f"{settings.mesh.instance_id}-{index}"
                }
            ),
            "metrics": settings.metrics.model_copy(update={"port": metrics_port}),
        }
    )


async def run_cluster(
    settings: Settings,
    *,
    instances: int,
    register: pathlib.Path | None,
    stop: asyncio.Event,
    hurry: asyncio.Event | None = None,
    restart: asyncio.Event | None = None,
    on_ready: Callable[[ClusterEndpoints], None] | None = None,
) -> None:
    """Run ``instances`` instance processes until ``stop`` is set
    (``hurry``: skip their lame duck; ``restart``: a rolling restart)."""
    prepare_data_dir(settings.data_dir, runtime_user=runtime_user(settings.runtime))
    host = settings.server.host
    grpc = settings.server.grpc_port or free_port(host)
    rest = settings.server.rest_port or free_port(host)
    async with _store_url(settings) as store:
        children = [
            InstanceChild(
                name=str(i),
                settings=_child_settings(settings, index=i, store=store, grpc=grpc, rest=rest),
                register=register if i == 0 else None,
            )
            for i in range(instances)
        ]
        supervisors: list[asyncio.Task[None]] = []
        rolling: asyncio.Task[None] | None = None

        def write_endpoints() -> ClusterEndpoints:
            endpoints = ClusterEndpoints(
                grpc=address(host, grpc),
                rest=(
                    rest_base_url(host, rest, tls=settings.tls is not None)
                    if settings.server.rest_enabled
                    else None
                ),
                store=store,
                instances=[c.endpoints for c in children if c.endpoints is not None],
            )
            write_endpoints_file(settings.data_dir, endpoints.to_json())
            return endpoints

        try:
            for child in children:
                await child.start()
            endpoints = write_endpoints()
            supervisors = [
                asyncio.create_task(c.supervise(write_endpoints), name=f"supervise-{c.name}")
                for c in children
            ]
            if restart is not None:
                rolling = asyncio.create_task(
                    _rolling_restarts(children, restart=restart, on_change=write_endpoints),
                    name="rolling-restarts",
                )
            if on_ready is not None:
                on_ready(endpoints)
            await stop.wait()
        finally:
            if rolling is not None:
                # Before the stops: a roll must not start a child again.
                rolling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rolling
            deadline = stop_deadline_s(children[0].settings)
            await asyncio.gather(*(c.stop(deadline, hurry=hurry) for c in children))
            for task in supervisors:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def _rolling_restarts(
    children: list[InstanceChild], *, restart: asyncio.Event, on_change: Callable[[], object]
) -> None:
    """Each time ``restart`` is set: restart the children one at a time."""
    while True:
        await restart.wait()
        restart.clear()
        log.info("rolling restart of %d instance(s)", len(children))
        for child in children:
            try:
                await child.restart(stop_deadline_s(child.settings))
            except UnavailableError as exc:
                # Taking down the next one would leave fewer still serving.
                log.error("rolling restart stopped: %s", exc)
                break
            on_change()
            log.info("rolling restart: instance %s is back", child.name)
        else:
            log.info("rolling restart done")
