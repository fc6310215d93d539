"""Options and helpers shared by the server commands (``up``, ``runtime``)."""

from __future__ import annotations

import asyncio
import pathlib
import signal
from dataclasses import dataclass, field

import click

__all__ = [
    "Shutdown",
    "allow_pickle_option",
    "capacity_option",
    "config_option",
    "restart_on_sighup",
    "shutdown_on_signals",
    "stop_on_signals",
]

config_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path),
    default=None,
    help="YAML settings file.",
)
allow_pickle_option = click.option(
    "--allow-pickle", is_flag=True, default=None, help="Serve joblib/pickle artifacts."
)
capacity_option = click.option(
    "--capacity", type=int, default=None, metavar="BYTES", help="Memory for models."
)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@dataclass(frozen=True)
class Shutdown:
    """How a serving command was asked to stop (see :func:`shutdown_on_signals`)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    """Stop: go lame duck, drain, close."""
    hurry: asyncio.Event = field(default_factory=asyncio.Event)
    """Skip what is left of the lame duck (the drain still runs)."""
    hand_over: asyncio.Event = field(default_factory=asyncio.Event)
    """Stop as ``stop`` does, first handing shared ports (``server.sharePorts``)
    over to the instances that stay."""


def shutdown_on_signals() -> Shutdown:
    """SIGTERM (Kubernetes, systemd, ``docker stop``, ``up`` stopping a
    child) stops with a lame duck; SIGINT (Ctrl-C: a person who wants it
    down) stops without one; a second signal of either kind while stopping
    ends the lame duck at once. SIGUSR1 (``up``'s rolling restart) stops as
    SIGTERM does and hands the shared ports over to the instances that stay.
    Call inside the running loop."""
    shutdown = Shutdown()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if sig is signal.SIGINT or shutdown.stop.is_set():
            shutdown.hurry.set()
        if sig is signal.SIGUSR1:
            shutdown.hand_over.set()
        shutdown.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        loop.add_signal_handler(sig, on_signal, sig)
    return shutdown


def restart_on_sighup() -> asyncio.Event:
    """An event set by each SIGHUP (call inside the running loop)."""
    restart = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, restart.set)
    return restart
