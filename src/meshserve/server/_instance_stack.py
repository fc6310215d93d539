"""What the front ends serve: the store, the registry over it, the puller,
the runtime and the instance, opened in that order and closed in reverse.

The runtime and the puller exist before the instance they report to: each
gets an event's ``emit`` as its callback, and the instance subscribes once
it is open (a runtime that restarts or reconnects comes back empty, and the
instance reloads what it had; a pull in progress shows in its stats).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from meshserve._events import AsyncEvent, Event
from meshserve.controller import ResourceStore, SealedSecrets
from meshserve.mesh import Instance
from meshserve.metrics import Metrics, MetricsRecorder
from meshserve.payloads import PayloadProcessors, parse_processors
from meshserve.protocol.peer import PeerClient
from meshserve.registry import Registry
from meshserve.runtime import (
    CommandRuntime,
    ExternalRuntime,
    InProcessRuntime,
    ProcessRuntime,
    Runtime,
    supported_model_types,
)
from meshserve.security import SealingKey
from meshserve.settings import Settings, TracingSettings
from meshserve.storage import LocalRoots, Puller, PullProgress
from meshserve.store import Store, open_store

__all__ = [
    "InstanceStack",
    "build_runtime",
    "instance_labels",
    "open_instance_stack",
    "own_instance_id",
]


def own_instance_id(settings: Settings) -> str:
    """``mesh.instanceId``, else ``<host name>-<process id>``."""
    return settings.mesh.instance_id or f"{socket.gethostname()}-{os.getpid()}"


def instance_labels(settings: Settings) -> tuple[str, ...]:
    """What this instance offers placement: its runtime and its formats (an
    external runtime's formats are unknown here: give them as mesh.labels)."""
    builtin = settings.runtime.host != "external"
    formats = tuple(f"mt:{t}" for t in supported_model_types()) if builtin else ()
    return (f"rt:{settings.mesh.runtime_name}", *formats, *settings.mesh.labels)


def build_runtime(
    settings: Settings,
    *,
    on_restart: Callable[[], Awaitable[None]],
    metrics: MetricsRecorder | None = None,
) -> Runtime:
    """The runtime ``runtime.host`` names; ``on_restart`` is awaited each
    time it comes back empty (its process restarted, or it was reached
    again after a loss). ``metrics`` sees the in-process runtime's batches."""
    runtime = settings.runtime
    if runtime.host == "process":
        # The child runs on the instance's kind of event loop, and traces
        # when the instance does.
        child_env = {
            **_tracing_env(settings.tracing),
            "MESHSERVE_SERVER__EVENT_LOOP": settings.server.event_loop,
        }
        return ProcessRuntime(settings=runtime, on_restart=on_restart, extra_env=child_env)
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
    observe = None if metrics is None else _batch_observer(metrics)
    return InProcessRuntime(settings=runtime, observe_batch=observe)


def _batch_observer(metrics: MetricsRecorder) -> Callable[[str, int], None]:
    def observe(model_id: str, size: int) -> None:
        metrics.observe_batch(size, model_id=model_id)

    return observe


def _tracing_env(tracing: TracingSettings) -> dict[str, str]:
    """What a runtime child needs to trace as the instance does: the setting
    (the standard OTEL_* variables reach it, less the exporter's headers:
    see security/_environment.py)."""
    if not tracing.enabled:
        return {}
    return {
        "MESHSERVE_TRACING__ENABLED": "true",
        "MESHSERVE_TRACING__SERVICE_NAME": tracing.service_name,
    }


@dataclass(frozen=True, slots=True)
class InstanceStack:
    """An open instance and the store it shares with the mesh."""

    instance: Instance
    store: Store
    resources: ResourceStore
    """The resources ``meshserve apply`` writes through the admin API;
    Secrets are sealed here, with this instance's key, and local model paths
    must lie under the configured roots."""


@contextlib.asynccontextmanager
async def open_instance_stack(
    settings: Settings,
    *,
    instance_id: str,
    address: str,
    data_address: str = "",
    peers: PeerClient,
    metrics: Metrics,
    sealing_key: SealingKey | None,
) -> AsyncIterator[InstanceStack]:
    """Open the layers under the front ends. ``address`` is the internal
    port's, where the other instances forward to this one (inference to
    ``data_address``, the data port's, when there is one); ``sealing_key``
    unseals the storage-config Secrets pulls read, and seals those applied
    (None: they cannot be)."""
    restarted = AsyncEvent("runtime restarted")
    pull_progress: Event[PullProgress] = Event("pull progress")
    async with (
        open_store(settings) as store,
        Registry.open(store) as registry,
        Puller(
            settings=settings.storage,
            data_dir=settings.data_dir,
            secrets=SealedSecrets(ResourceStore(store), sealing_key=sealing_key),
            progress=pull_progress.emit,
            local_roots=LocalRoots.from_settings(
                settings.storage, auth_enabled=settings.auth.enabled
            ),
        ) as puller,
        build_runtime(settings, on_restart=restarted.emit, metrics=metrics) as runtime,
        PayloadProcessors(
            specs=parse_processors(settings.payloads.processors),
            queue_size=settings.payloads.queue_size,
            timeout_s=settings.payloads.timeout_s,
            source=f"/meshserve/instances/{instance_id}",
            metrics=metrics,
        ) as payloads,
        Instance.open(
            instance_id=instance_id,
            registry=registry,
            runtime=runtime,
            settings=settings.cache,
            mesh=settings.mesh,
            address=address,
            data_address=data_address,
            labels=instance_labels(settings),
            peers=peers,
            metrics=metrics,
            puller=puller,
            limits=settings.limits,
            payloads=payloads,
        ) as instance,
    ):
        restarted.subscribe(instance.on_runtime_restart)
        pull_progress.subscribe(instance.on_pull_progress)
        yield InstanceStack(
            instance=instance,
            store=store,
            resources=ResourceStore(
                store,
                sealing_key=sealing_key,
                local_roots=LocalRoots.for_resources(settings.storage),
            ),
        )
