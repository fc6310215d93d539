"""CommandRuntime: a runtime started from a command line (a ServingRuntime's
container), kept running, and driven over the SPI."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from meshserve import errors
from meshserve.runtime import CommandRuntime, ExternalState, ModelSpec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def socket() -> Iterator[pathlib.Path]:
    # Unix socket paths are limited to ~107 bytes: pytest's tmp paths are long.
    directory = pathlib.Path(tempfile.mkdtemp(prefix="ms-cmd-"))
    yield directory / "rt.sock"
    shutil.rmtree(directory, ignore_errors=True)


async def test_a_command_that_exits_fails_the_start_at_once(
    tmp_path: pathlib.Path, socket: pathlib.Path
) -> None:
    runtime = CommandRuntime(
        command=["/bin/false"],
        log_path=tmp_path / "runtime.log",
        address=f"unix:{socket}",
        start_timeout_s=3600,
    )
    # At once, not after the whole start timeout: the deadline here is
    # generous, and the start timeout far beyond it.
    with pytest.raises(errors.UnavailableError, match="exited with code 1 before it served"):
        async with asyncio.timeout(60):
            await runtime.start()
    assert runtime.pid is None


async def test_the_command_is_restarted_and_the_runtime_adopted_again(
    tmp_path: pathlib.Path, socket: pathlib.Path, example_models: dict[str, pathlib.Path]
) -> None:
    runtime = CommandRuntime(
        command=[sys.executable, "-m", "meshserve", "runtime", "--listen", f"unix:{socket}"],
        env={"MESHSERVE_RUNTIME__PRELOAD_LIBRARIES": "false"},
        log_path=tmp_path / "runtime.log",
        address=f"unix:{socket}",
        start_timeout_s=60,
        restart_backoff_initial_s=0.1,
    )
    async with runtime:
        assert runtime.state is ExternalState.READY
        spec = ModelSpec(
            model_id="m", model_type="sklearn", model_path=str(example_models["sklearn-skops"])
        )
        assert (await runtime.load(spec)).size_bytes > 0
        first = runtime.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if runtime.starts == 2 and runtime.state is ExternalState.READY:
                break
            await asyncio.sleep(0.1)
        assert runtime.starts == 2 and runtime.state is ExternalState.READY
        assert runtime.pid not in (None, first)
        # Restarted empty; loads work again.
        assert (await runtime.load(spec)).size_bytes > 0
    assert "listening on" in (tmp_path / "runtime.log").read_text()
    assert runtime.pid is None
