"""The command group; each subcommand lives in its own module.

Subcommands are imported only when invoked: a client command should not pay
for importing the server, the runtime and the model libraries.
"""

from __future__ import annotations

import importlib
import logging

import click

from meshserve import __version__

__all__ = ["cli", "main"]

# command name -> "module:attribute" under meshserve.cli
_COMMANDS = {
    "up": "_up:up",
    "instance": "_instance:instance",
    "operator": "_operator:operator",
    "config": "_config:config",
    "apply": "_resources:apply",
    "get": "_resources:get",
    "describe": "_resources:describe",
    "delete": "_resources:delete",
    "wait": "_wait:wait",
    "runtime": "_runtime:runtime",
    "adapter": "_adapter:adapter",
    "models": "_models:models",
    "vmodels": "_vmodels:vmodels",
    "infer": "_infer:infer",
    "status": "_status:status",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(f"meshserve.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def main() -> None:
    cli(prog_name="meshserve")
