"""The ``meshserve`` command."""

from meshserve.cli._main import cli, main

__all__ = ["cli", "main"]
