"""``meshserve runtime``: the built-in runtime on its own."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import pathlib
import signal
import sysconfig

import click
import grpc

import meshserve
from meshserve import _event_loop
from meshserve.cli._options import (
    allow_pickle_option,
    capacity_option,
    config_option,
    stop_on_signals,
)
from meshserve.errors import MeshServeError
from meshserve.runtime import BuiltinRuntime, ListenAddress, ModelSpec, RuntimeServer
from meshserve.security import RUN_AS_USER_ADVICE, PrivilegeDropError, drop_privileges
from meshserve.settings import load_settings
from meshserve.tracing import traced

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGTERM us when the parent goes, so a crashed instance
    leaves no orphaned runtime holding memory."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit(0)


def _become(user: str) -> None:
    """Drop root for ``user`` (no-op when not root), then make sure the code
    still to be imported (format libraries load lazily) is readable."""
    try:
        dropped = drop_privileges(user)
    except (ValueError, OSError, PrivilegeDropError) as exc:
        raise click.ClickException(f"cannot run as user {user!r}: {exc}") from None
    if not dropped:
        return
    log.info("runtime running as uid %d, gid %d", os.getuid(), os.getgid())
    needed = {
        "the Python standard library": sysconfig.get_path("stdlib"),
        "the installed packages": os.path.dirname(os.path.dirname(grpc.__file__)),
        "meshserve": os.path.dirname(meshserve.__file__),
    }
    for what, path in needed.items():
        if not os.access(path, os.R_OK | os.X_OK):
            raise click.ClickException(
                f"after becoming user {user!r} this process cannot read {what} at {path}; "
                f"{RUN_AS_USER_ADVICE}"
            )


async def _watch_parent(parent_pid: int, stop: asyncio.Event) -> None:
    # prctl covers Linux; this poll covers the rest.
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("parent %d is gone; stopping", parent_pid)
            stop.set()
            return
        await asyncio.sleep(1.0)


async def _serve(server: RuntimeServer, parent_pid: int | None) -> None:
    stop = stop_on_signals()
    async with server, asyncio.TaskGroup() as tasks:
        click.echo(f"meshserve runtime listening on {server.address}", err=False)
        if parent_pid is not None:
            tasks.create_task(_watch_parent(parent_pid, stop))
        await stop.wait()


@click.command()
@click.option(
    "--listen",
    required=True,
    metavar="unix:PATH|127.0.0.1:PORT",
    help="A Unix socket (created with mode 0600) or a loopback TCP address; port 0 picks one.",
)
@allow_pickle_option
@capacity_option
@config_option
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="ID:TYPE:PATH",
    help="Load a model at start (repeatable), e.g. iris:sklearn:examples/models/sklearn-skops.",
)
@click.option(
    "--user",
    default=None,
    metavar="NAME|UID",
    help="When started as root, become this user (no capabilities) before serving; "
    "ignored otherwise. The user must be able to create the socket and read Python and "
    "the models. An instance passes its runtime.runAsUser.",
)
@click.option("--exit-with-parent", type=int, default=None, hidden=True)
def runtime(
    listen: str,
    allow_pickle: bool | None,
    capacity: int | None,
    config: pathlib.Path | None,
    models: tuple[str, ...],
    user: str | None,
    exit_with_parent: int | None,
) -> None:
    """Run the built-in runtime alone: ModelMesh's runtime SPI plus v2 inference.

    An instance starts one of these per out-of-process runtime; on its own it
    is a single-node model server whose models are loaded through the SPI
    (loadModel) or with --model.
    """
    try:
        address = ListenAddress.parse(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    specs = [_parse_model(text) for text in models]
    settings = load_settings(
        config_file=config,
        overrides={"runtime": {"allow_pickle": allow_pickle, "capacity_bytes": capacity}},
    )
    # Before anything touches a model; and before PDEATHSIG, which a change
    # of user clears.
    if user is not None:
        _become(user)
    if exit_with_parent is not None:
        _die_with_parent(exit_with_parent)
    builtin = BuiltinRuntime(settings=settings.runtime)
    for spec in specs:
        try:
            builtin.load(spec)
        except MeshServeError as exc:
            raise click.ClickException(f"cannot load {spec.model_id}: {exc}") from None
    server = RuntimeServer(runtime=builtin, listen=address)
    # The instance turns tracing on here when it is on there
    # (MESHSERVE_TRACING__*); the spans join the requests' traces.
    with traced(enabled=settings.tracing.enabled, service_name=settings.tracing.service_name):
        _event_loop.run(_serve(server, exit_with_parent), loop=settings.server.event_loop)


def _parse_model(text: str) -> ModelSpec:
    model_id, sep1, rest = text.partition(":")
    model_type, sep2, path = rest.partition(":")
    if not (sep1 and sep2 and model_id and model_type and path):
        raise click.BadParameter(f"{text!r}: expected ID:TYPE:PATH", param_hint="--model")
    return ModelSpec(
        model_id=model_id, model_type=model_type, model_path=str(pathlib.Path(path).resolve())
    )
