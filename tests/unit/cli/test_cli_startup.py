"""What `meshserve` imports before it does anything: `--help` imports no
subcommand, and the client commands none of the server, the runtime, the
controller, the settings (pydantic) or numpy. Structure, not timings:
bench/cli_startup.py measures those."""

from __future__ import annotations

import importlib
import json
import pathlib
import subprocess
import sys

import click
import pytest

from meshserve.cli import _main
from meshserve.cli._client import default_data_dir
from meshserve.settings import load_settings

# Packages no client command needs (the server side, and the heavy libraries
# behind it).
SERVER_SIDE = (
    "numpy",
    "pydantic",
    "meshserve.controller",
    "meshserve.mesh",
    "meshserve.registry",
    "meshserve.runtime",
    "meshserve.server",
    "meshserve.settings",
    "meshserve.storage",
    "meshserve.store",
    "meshserve.supervisor",
)

# Run a command in a fresh interpreter; print the modules it imported.
_PROBE = """
import json, sys
from meshserve.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="meshserve")
except SystemExit:
    pass
print("MODULES " + json.dumps(sorted(sys.modules)))
"""


def _imported(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=pathlib.Path(__file__).parent,  # no ./.meshserve here
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _of(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in packages or m.startswith(packages))


def _command(name: str) -> click.Command:
    module, attribute = _main._COMMANDS[name].split(":")
    command = getattr(importlib.import_module(f"meshserve.cli.{module}"), attribute)
    assert isinstance(command, click.Command)
    return command


def test_every_command_has_a_summary() -> None:
    assert set(_main._SUMMARIES) == set(_main._COMMANDS)


@pytest.mark.parametrize("name", sorted(_main._COMMANDS))
@pytest.mark.parametrize("limit", [20, 45, 61, 80, 300])
def test_summary_is_shortened_as_the_commands_own_help(name: str, limit: int) -> None:
    stand_in = click.Command(name, help=_main._SUMMARIES[name])
    assert stand_in.get_short_help_str(limit) == _command(name).get_short_help_str(limit)


def test_help_lists_every_command_and_imports_none() -> None:
    imported = _imported("--help")
    subcommands = [m for m in imported if m.startswith("meshserve.cli._")]
    assert subcommands == ["meshserve.cli._main"]
    assert _of(imported, ("grpc", *SERVER_SIDE)) == []


@pytest.mark.parametrize(
    "args",
    [
        ["get", "--help"],
        ["models", "list", "--help"],
        ["vmodels", "list", "--help"],
        ["infer", "--help"],
        # The whole command, up to the failed call (nothing listens on port 1).
        ["get", "isvc", "--grpc", "127.0.0.1:1", "--timeout", "5"],
        ["models", "list", "--endpoint", "127.0.0.1:1", "--timeout", "5"],
        ["vmodels", "list", "--endpoint", "127.0.0.1:1", "--timeout", "5"],
    ],
    ids=" ".join,
)
def test_client_commands_import_nothing_of_the_server_side(args: list[str]) -> None:
    assert _of(_imported(*args), SERVER_SIDE) == []


def test_get_without_a_data_dir_or_endpoint_still_avoids_the_settings() -> None:
    # No endpoints.json in the default data dir: exit 3, with nothing heavy imported.
    assert _of(_imported("get", "isvc"), SERVER_SIDE) == []


@pytest.mark.parametrize(
    "env",
    [{}, {"MESHSERVE_DATA_DIR": "/srv/mesh"}, {"meshserve_data_dir": "relative/dir"}],
    ids=["default", "env", "lower-case env"],
)
def test_default_data_dir_is_the_settings_one(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MESHSERVE_DATA_DIR", "meshserve_data_dir"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_data_dir() == load_settings().data_dir
