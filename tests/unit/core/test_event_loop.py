"""meshserve._event_loop: the servers run on uvloop unless told otherwise."""

from __future__ import annotations

import asyncio

import pytest

from meshserve import _event_loop
from meshserve.settings import Settings


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_by_default() -> None:
    assert _event_loop.uvloop_available()  # a dependency on this platform
    assert _event_loop.run(_loop_module()).startswith("uvloop")
    assert Settings().server.event_loop == "uvloop"


def test_asyncio_when_asked() -> None:
    assert _event_loop.run(_loop_module(), loop="asyncio").startswith("asyncio")


def test_asyncio_when_uvloop_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # None in sys.modules makes `import uvloop` raise ImportError.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    assert _event_loop.run(_loop_module(), loop="uvloop").startswith("asyncio")


def test_the_runtime_child_runs_on_the_instances_kind_of_loop() -> None:
    from meshserve.runtime import ProcessRuntime
    from meshserve.server._instance_stack import build_runtime

    async def nothing() -> None:
        return None

    for kind in ("uvloop", "asyncio"):
        settings = Settings.model_validate(
            {"runtime": {"host": "process"}, "server": {"event_loop": kind}}
        )
        runtime = build_runtime(settings, on_restart=nothing)
        assert isinstance(runtime, ProcessRuntime)
        assert runtime._child_env()["MESHSERVE_SERVER__EVENT_LOOP"] == kind
