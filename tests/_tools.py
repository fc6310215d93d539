"""Programs some tests need from Debian's packages (.ci/run installs them):
a test calls :func:`require_tool`, which skips it on a machine without the
program, and fails it in CI, so that no such test goes unseen there."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["require_tool"]


def require_tool(program: str, *, package: str) -> str:
    """The path of ``program`` (a name on PATH, or a path)."""
    found = shutil.which(program)
    if found is not None:
        return found
    missing = f"no {program} (Debian's {package} package; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(missing)
    pytest.skip(missing)
