"""Stopping an ``up`` child: SIGTERM, SIGINT once the stop is hurried,
SIGKILL at the deadline; the deadline covers the child's lame duck."""

from __future__ import annotations

import asyncio
import pathlib
import sys

from meshserve.settings import Settings
from meshserve.supervisor._children import InstanceChild, stop_deadline_s

# Ignores SIGTERM (as an instance in its lame duck goes on serving); SIGINT
# (the default handler) ends it.
_LAME_DUCK = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: print("term", flush=True))
print("ready", flush=True)
time.sleep(60)
"""


async def _child(tmp_path: pathlib.Path) -> InstanceChild:
    child = InstanceChild(name="0", settings=Settings(data_dir=tmp_path))
    child.process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LAME_DUCK, stdout=asyncio.subprocess.PIPE
    )
    assert child.process.stdout is not None
    assert await asyncio.wait_for(child.process.stdout.readline(), 30) == b"ready\n"
    return child


async def test_a_hurried_stop_passes_sigint_on(tmp_path: pathlib.Path) -> None:
    child = await _child(tmp_path)
    assert child.process is not None and child.process.stdout is not None
    hurry = asyncio.Event()
    stopping = asyncio.ensure_future(child.stop(30, hurry=hurry))
    assert await asyncio.wait_for(child.process.stdout.readline(), 30) == b"term\n"
    await asyncio.sleep(0.2)
    assert not stopping.done(), "SIGTERM alone: the child goes on"
    hurry.set()
    await asyncio.wait_for(stopping, 20)
    # KeyboardInterrupt: SIGINT ended it, not SIGKILL.
    assert child.process.returncode not in (None, -9)


async def test_a_stop_already_hurried_sends_sigint_at_once(tmp_path: pathlib.Path) -> None:
    child = await _child(tmp_path)
    hurry = asyncio.Event()
    hurry.set()
    await asyncio.wait_for(child.stop(30, hurry=hurry), 20)
    assert child.process is not None and child.process.returncode not in (None, -9)


def test_the_stop_deadline_covers_lame_duck_drain_and_both_graces() -> None:
    settings = Settings.model_validate(
        {"server": {"lameDuckS": 7, "gracePeriodS": 2}, "mesh": {"drainDeadlineS": 11}}
    )
    assert stop_deadline_s(settings) == 7 + 11 + 2 * 2 + 5
