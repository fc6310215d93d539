"""The command group; each subcommand lives in its own module.

Subcommands are imported only when invoked: a client command should not pay
for importing the server, the runtime and the model libraries. ``meshserve
--help`` imports none of them: it shows each command's first sentence from
``_SUMMARIES`` (tests/unit/cli/test_cli_startup.py checks the table against
the commands' own help, so it cannot drift).
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


# command name -> the first sentence of its help, as click shortens it
_SUMMARIES = {
    "operator": "Run the operator until SIGTERM: ServingRuntime, InferenceService and "
    "Predictor resources become Deployments and models of the mesh.",
    "status": "Show the mesh as the status page does: instances (capacity, models, LRU age, "
    "requests/min), the hottest models and their copies, loads in flight, recent load "
    "failures with their reasons, and InferenceServices.",
    "adapter": "Serve ModelMesh's runtime SPI in front of another model server, as "
    "ModelMesh Serving's built-in adapters do.",
    "apply": "Create or update the resources in FILE (YAML, several documents or a List; "
    "a directory: its .yaml/.yml/.json files; - reads stdin).",
    "config": "Dynamic settings of a running mesh (no restart needed), and the effective "
    "settings with their sources (show).",
    "delete": "Delete KIND NAME, or every resource in a file (-f: the resources it names, "
    "as for apply; objects meshserve does not manage are skipped).",
    "describe": "Show one resource as applied, its status, and the fields meshserve keeps "
    "but does not act on.",
    "get": "List resources of KIND (isvc, predictor, servingruntime, clusterservingruntime, "
    "secret), or show one, with their status.",
    "infer": "Run inference on model (or vmodel) NAME and print the v2 response JSON.",
    "instance": "Run one instance until SIGTERM, then stop without failing a request: not "
    "ready but still serving for server.lameDuckS (SIGINT or a second signal skips it), then "
    "drain (its recently used models are loaded elsewhere) before it leaves the mesh.",
    "models": "Register, inspect, load and unregister models on an instance.",
    "runtime": "Run the built-in runtime alone: ModelMesh's runtime SPI plus v2 inference.",
    "up": "Serve models on this machine until Ctrl-C: the store, the instances and their runtimes.",
    "vmodels": "Create, retarget, inspect and delete vmodels on an instance.",
    "wait": "Wait until KIND/NAME (or KIND NAME) meets --for, e.g.",
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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, from ``_SUMMARIES`` where it can (a command
        missing there is imported for its help, as click would)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            if name in _SUMMARIES:
                # A stand-in command shortens it exactly as click would.
                stand_in = click.Command(name, help=_SUMMARIES[name])
                rows.append((name, stand_in.get_short_help_str(limit)))
            elif (command := self.get_command(ctx, name)) is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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
