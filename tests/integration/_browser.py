"""Headless Chromium for the tests that look at a page: Debian's
``/usr/bin/chromium`` driven by Playwright (never a downloaded browser),
with a fresh profile, no network beyond what the page asks of loopback,
and a place for screenshots.

``.ci/run`` installs Debian's chromium when it is missing; elsewhere a
machine without it skips these tests (``tests._tools.require_tool``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from tests._examples import ROOT
from tests._tools import require_tool

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

__all__ = ["CHROMIUM", "artifacts_dir", "chromium"]

CHROMIUM = pathlib.Path(os.environ.get("MESHSERVE_TEST_CHROMIUM", "/usr/bin/chromium"))

_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def artifacts_dir() -> pathlib.Path:
    """Where tests leave screenshots: $MESHSERVE_TEST_ARTIFACTS, else
    tests/artifacts (git ignores it)."""
    path = pathlib.Path(os.environ.get("MESHSERVE_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def chromium(*, width: int = 1280, height: int = 900) -> Iterator[BrowserContext]:
    """A browser context in headless Chromium with an empty profile, closed
    (and the profile removed) when the block ends."""
    executable = require_tool(str(CHROMIUM), package="chromium")
    from playwright.sync_api import sync_playwright

    with (
        tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile,
        sync_playwright() as playwright,
    ):
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()
