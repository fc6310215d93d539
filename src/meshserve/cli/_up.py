"""``meshserve up``: one machine, one command, in the foreground."""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import click

from meshserve._log_format import configure_logging
from meshserve.cli._mesh_secret import with_mesh_secret
from meshserve.cli._options import restart_on_sighup, shutdown_on_signals
from meshserve.cli._sealing import with_sealing_key
from meshserve.cli._serve_options import (
    register_entries,
    serve,
    serve_options,
    settings_from_flags,
    warn_if_root,
)
from meshserve.server import Endpoints, ModelEntry
from meshserve.settings import Settings
from meshserve.supervisor import ClusterEndpoints, run_cluster, run_with_pools


def _announcer(settings: Settings) -> Callable[[Endpoints | ClusterEndpoints], None]:
    """Prints where ``up`` answers; the gRPC address is bare ``host:port``
    (what clients take), so the line says when it needs TLS."""
    tls = " over TLS" if settings.tls is not None else ""

    def announce(endpoints: Endpoints | ClusterEndpoints) -> None:
        click.echo(
            f"meshserve up: gRPC {endpoints.grpc}{tls} (v2 inference, mmesh.ModelMesh management)"
        )
        if endpoints.rest:
            click.echo(f"meshserve up: REST {endpoints.rest}/v2")
        if isinstance(endpoints, Endpoints):
            for namespace, grpc in endpoints.namespaces.items():
                click.echo(
                    f"meshserve up: gRPC {grpc}{tls} (v2 inference, plain names in "
                    f"namespace {namespace})"
                )
        if isinstance(endpoints, ClusterEndpoints):
            for entry in endpoints.instances:
                data = f", data port {entry['data']}" if entry.get("data") else ""
                click.echo(
                    f"meshserve up: instance {entry['id']} at {entry['grpc']} "
                    f"(internal port {entry['internal']}{data})"
                )
        click.echo("meshserve up: ready", nl=True)

    return announce


async def _run(settings: Settings, register: list[ModelEntry]) -> None:
    shutdown = shutdown_on_signals()
    await run_with_pools(
        settings,
        register=register,
        stop=shutdown.stop,
        hurry=shutdown.hurry,
        on_ready=_announcer(settings),
    )


async def _run_cluster(
    settings: Settings, *, instances: int, register: pathlib.Path | None
) -> None:
    shutdown = shutdown_on_signals()
    await run_cluster(
        settings,
        instances=instances,
        register=register,
        stop=shutdown.stop,
        hurry=shutdown.hurry,
        restart=restart_on_sighup(),
        on_ready=_announcer(settings),
    )


@click.command()
@serve_options
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Instance processes sharing one address (more than 1 coordinates them through "
    "etcd: a private one unless --store etcd://... is given).",
)
def up(instances: int, register_file: pathlib.Path | None, **flags: Any) -> None:
    """Serve models on this machine until Ctrl-C: the store, the instances
    and their runtimes. Ready when /v2/health/ready answers 200. SIGTERM
    stops each instance with a lame duck (server.lameDuckS) and a drain;
    with --instances N, SIGHUP restarts them one at a time."""
    # A key for the Secrets `apply` seals, made once in the data dir if none is given.
    settings = with_sealing_key(settings_from_flags(**flags), create=True)
    # The secret its instances (pools, --instances) prove to each other.
    configure_logging(settings.log.format)
    settings = with_mesh_secret(settings, create=True)
    register = register_entries(register_file)
    warn_if_root("up")
    if instances == 1:
        serve(_run(settings=settings, register=register), event_loop=settings.server.event_loop)
    else:
        serve(
            _run_cluster(settings, instances=instances, register=register_file),
            event_loop=settings.server.event_loop,
        )
