"""``meshserve adapter``: other model servers behind ModelMesh's runtime SPI."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import shutil
from typing import Any

import click

from meshserve.cli._options import stop_on_signals
from meshserve.errors import MeshServeError
from meshserve.runtime import (
    ListenAddress,
    MLServerAdapter,
    MLServerAdapterConfig,
    mlserver_address,
)

_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(MLServerAdapterConfig)}


@click.group()
def adapter() -> None:
    """Serve ModelMesh's runtime SPI in front of another model server, as
    ModelMesh Serving's built-in adapters do."""


async def _serve(adapter: MLServerAdapter) -> None:
    stop = stop_on_signals()
    async with adapter:
        click.echo(f"meshserve adapter mlserver listening on {adapter.address}")
        await stop.wait()


def _address(text: str, option: str) -> ListenAddress:
    try:
        return mlserver_address(text, what=option)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@adapter.command("mlserver")
@click.option(
    "--listen",
    required=True,
    metavar="unix:PATH|127.0.0.1:PORT",
    help="Where to serve the SPI: a Unix socket (mode 0600) or a loopback port (0 picks one).",
)
@click.option(
    "--mlserver-grpc",
    required=True,
    metavar="127.0.0.1:PORT",
    help="MLServer's gRPC port: the adapter manages models there, and instances send "
    "inference there (their --runtime-data-address).",
)
@click.option(
    "--mlserver-http",
    default=None,
    metavar="127.0.0.1:PORT",
    help="MLServer's REST port; needed when the adapter starts MLServer.",
)
@click.option(
    "--models-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=pathlib.Path),
    help="MLServer's model repository; the adapter owns its contents (cleared when an "
    "instance connects).",
)
@click.option(
    "--capacity-bytes",
    type=click.IntRange(min=1),
    default=_DEFAULTS["capacity_bytes"],
    show_default=True,
    help="Memory offered to models.",
)
@click.option(
    "--default-model-size-bytes",
    type=click.IntRange(min=1),
    default=_DEFAULTS["default_model_size_bytes"],
    show_default=True,
    envvar="DEFAULT_MODELSIZE",
    show_envvar=True,
    help="Size assumed when a model's size on disk is unknown.",
)
@click.option(
    "--size-multiplier",
    type=click.FloatRange(min=0, min_open=True),
    default=_DEFAULTS["size_multiplier"],
    show_default=True,
    envvar="MODELSIZE_MULTIPLIER",
    show_envvar=True,
    help="Bytes in memory per byte on disk.",
)
@click.option(
    "--max-loading-concurrency",
    type=click.IntRange(min=1),
    default=_DEFAULTS["max_loading_concurrency"],
    show_default=True,
    envvar="LOADING_CONCURRENCY",
    show_envvar=True,
    help="Loads in flight at once.",
)
@click.option(
    "--model-loading-timeout-ms",
    type=click.IntRange(min=1),
    default=_DEFAULTS["model_loading_timeout_ms"],
    show_default=True,
    envvar="LOADTIME_TIMEOUT",
    show_envvar=True,
    help="A longer load fails (ModelMesh's MLServer adapter's default).",
)
@click.argument("mlserver_argv", nargs=-1, type=click.UNPROCESSED, metavar="[-- MLSERVER_ARGV...]")
def mlserver(
    listen: str,
    mlserver_grpc: str,
    mlserver_http: str | None,
    models_dir: pathlib.Path,
    capacity_bytes: int,
    default_model_size_bytes: int,
    size_multiplier: float,
    max_loading_concurrency: int,
    model_loading_timeout_ms: int,
    mlserver_argv: tuple[str, ...],
) -> None:
    """Serve ModelMesh's runtime SPI for an MLServer (sklearn models).

    The environment variables are those of ModelMesh Serving's MLServer
    adapter, so a ServingRuntime's builtInAdapter env means the same here.

    With a command after -- (mlserver start MODELS_DIR), the adapter runs
    MLServer itself on the given ports, restarts it if it dies and stops it
    on exit; without one, it drives an MLServer someone else runs there.
    Inference goes straight to MLServer's gRPC port, not through the adapter.
    """
    try:
        listen_address = ListenAddress.parse(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    if mlserver_argv and shutil.which(mlserver_argv[0]) is None:
        raise click.BadParameter(
            f"{mlserver_argv[0]!r} is not an executable (run scripts/mlserver-venv for one)",
            param_hint="MLSERVER_ARGV",
        )
    grpc_address = _address(mlserver_grpc, "--mlserver-grpc")
    http_address = _address(mlserver_http, "--mlserver-http") if mlserver_http else None
    try:
        config = MLServerAdapterConfig(
            listen=listen_address,
            mlserver_grpc=grpc_address,
            mlserver_http=http_address,
            models_dir=models_dir.resolve(),
            mlserver_argv=mlserver_argv,
            capacity_bytes=capacity_bytes,
            default_model_size_bytes=default_model_size_bytes,
            size_multiplier=size_multiplier,
            max_loading_concurrency=max_loading_concurrency,
            model_loading_timeout_ms=model_loading_timeout_ms,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        asyncio.run(_serve(MLServerAdapter(config=config)))
    except (OSError, MeshServeError) as exc:
        # Cannot listen, or cannot create the models dir or start MLServer.
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
