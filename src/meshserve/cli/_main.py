"""The command group; each subcommand lives in its own module."""

from __future__ import annotations

import logging

import click

from meshserve import __version__
from meshserve.cli import _runtime, _up

__all__ = ["cli", "main"]

EXIT_OK = 0
EXIT_SERVER_ERROR = 1
EXIT_USAGE = 2
EXIT_CANNOT_CONNECT = 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="meshserve")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    envvar="MESHSERVE_LOG_LEVEL",
)
def cli(log_level: str) -> None:
    """meshserve: many models, limited memory, one serving mesh."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


cli.add_command(_runtime.runtime)
cli.add_command(_up.up)


def main() -> None:
    cli(prog_name="meshserve")
