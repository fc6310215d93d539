"""Options and helpers shared by the server commands (``up``, ``runtime``)."""

from __future__ import annotations

import asyncio
import pathlib
import signal

import click

__all__ = ["allow_pickle_option", "capacity_option", "config_option", "stop_on_signals"]

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
