"""``meshserve instance``: one instance of a mesh (what a Kubernetes pod runs)."""

from __future__ import annotations

import pathlib
from typing import Any

import click

from meshserve._log_format import configure_logging
from meshserve.cli._mesh_secret import with_mesh_secret
from meshserve.cli._options import shutdown_on_signals
from meshserve.cli._sealing import with_sealing_key
from meshserve.cli._serve_options import (
    register_entries,
    serve,
    serve_options,
    settings_from_flags,
    warn_if_root,
)
from meshserve.server import Endpoints, ModelEntry, serve_instance
from meshserve.settings import Settings


def _announce(endpoints: Endpoints) -> None:
    click.echo(
        f"meshserve instance {endpoints.instance_id}: gRPC {endpoints.grpc}, "
        f"internal {endpoints.internal}, REST {endpoints.rest}, metrics {endpoints.metrics}"
    )
    click.echo("meshserve instance: ready")


async def _run(settings: Settings, register: list[ModelEntry]) -> None:
    shutdown = shutdown_on_signals()
    await serve_instance(
        settings,
        register=register,
        stop=shutdown.stop,
        hurry=shutdown.hurry,
        hand_over=shutdown.hand_over,
        on_ready=_announce,
    )


@click.command()
@serve_options
@click.option("--instance-id", default=None, help="Id in the mesh  [default: <host>-<pid>]")
@click.option(
    "--internal-port", type=int, default=None, help="Port other instances forward to  [default: 0]"
)
@click.option(
    "--share-ports",
    is_flag=True,
    default=None,
    help="Share the gRPC/REST ports with other instances on this machine (SO_REUSEPORT).",
)
def instance(
    instance_id: str | None,
    internal_port: int | None,
    share_ports: bool | None,
    register_file: pathlib.Path | None,
    **flags: Any,
) -> None:
    """Run one instance until SIGTERM, then stop without failing a request:
    not ready but still serving for server.lameDuckS (SIGINT or a second
    signal skips it), then drain (its recently used models are loaded
    elsewhere) before it leaves the mesh. SIGUSR1 does the same, first
    handing shared ports (--share-ports) over to the instances that stay."""
    settings = with_sealing_key(
        settings_from_flags(
            **flags,
            extra={
                "mesh": {"instance_id": instance_id, "internal_port": internal_port},
                "server": {"share_ports": share_ports},
            },
        ),
        create=False,
    )
    configure_logging(settings.log.format)
    settings = with_mesh_secret(settings, create=False)
    warn_if_root("instance")
    serve(_run(settings, register_entries(register_file)), event_loop=settings.server.event_loop)
