"""``meshserve up``: one machine, one command, in the foreground."""

from __future__ import annotations

import asyncio
import os
import pathlib

import click

from meshserve.cli._options import (
    allow_pickle_option,
    capacity_option,
    config_option,
    stop_on_signals,
)
from meshserve.server import Endpoints, ModelEntry, load_register_file, serve_instance
from meshserve.settings import Settings, load_settings


def _announce(endpoints: Endpoints) -> None:
    click.echo(f"meshserve up: gRPC {endpoints.grpc} (v2 inference, mmesh.ModelMesh management)")
    if endpoints.rest:
        click.echo(f"meshserve up: REST {endpoints.rest}/v2")
    click.echo("meshserve up: ready", nl=True)


async def _run(settings: Settings, register: list[ModelEntry]) -> None:
    stop = stop_on_signals()
    await serve_instance(settings, register=register, stop=stop, on_ready=_announce)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    default=None,
    help="Store, logs and endpoints.json  [default: ./.meshserve]",
)
@click.option("--host", default=None, help="Bind address  [default: 127.0.0.1]")
@click.option("--grpc-port", type=int, default=None, help="gRPC port, 0 picks one  [default: 8033]")
@click.option("--rest-port", type=int, default=None, help="REST port, 0 picks one  [default: 8008]")
@config_option
@click.option(
    "--runtime-host",
    type=click.Choice(["inprocess", "process"]),
    default=None,
    help="Run the built-in runtime in this process or in a sandboxed child  [default: inprocess]",
)
@allow_pickle_option
@capacity_option
@click.option(
    "--register",
    "register_file",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    default=None,
    help="YAML file of models to register at start (models: [{name, type, path}]).",
)
def up(
    data_dir: pathlib.Path | None,
    host: str | None,
    grpc_port: int | None,
    rest_port: int | None,
    config: pathlib.Path | None,
    runtime_host: str | None,
    allow_pickle: bool | None,
    capacity: int | None,
    register_file: pathlib.Path | None,
) -> None:
    """Serve models on this machine until Ctrl-C: the embedded store, one
    instance and its runtime. Ready when /v2/health/ready answers 200."""
    settings = load_settings(
        config_file=config,
        overrides={
            "data_dir": data_dir,
            "server": {"host": host, "grpc_port": grpc_port, "rest_port": rest_port},
            "runtime": {
                "host": runtime_host,
                "allow_pickle": allow_pickle,
                "capacity_bytes": capacity,
            },
        },
    )
    if allow_pickle and settings.runtime.host != "process":
        raise click.UsageError(
            "--allow-pickle needs --runtime-host process: a pickle runs code when it loads, "
            "so it only loads in the sandboxed child process"
        )
    register: list[ModelEntry] = []
    if register_file is not None:
        try:
            register = load_register_file(register_file)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--register") from None
    if os.geteuid() == 0:
        click.echo(
            "meshserve up: running as root; a model that escapes its runtime would have root. "
            "Run as an unprivileged user.",
            err=True,
        )
    asyncio.run(_run(settings=settings, register=register))
