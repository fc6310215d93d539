"""Where the tests find MLServer: its own venv (scripts/mlserver-venv)."""

from __future__ import annotations

import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def mlserver_command() -> str:
    """``$MESHSERVE_TEST_MLSERVER``, else ``.venv-mlserver/bin/mlserver``;
    fails the test (never skips it) when neither is there."""
    command = os.environ.get("MESHSERVE_TEST_MLSERVER") or str(
        ROOT / ".venv-mlserver" / "bin" / "mlserver"
    )
    if not os.access(command, os.X_OK):
        pytest.fail(
            f"no MLServer at {command}: run scripts/mlserver-venv (scripts/test does), "
            "or set MESHSERVE_TEST_MLSERVER to an mlserver command"
        )
    return command
