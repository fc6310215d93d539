"""Background work an instance starts while serving (second copies, scale-ups,
drops of deleted models): owned, and cancelled when the instance closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Protocol

from meshserve import _tasks
from meshserve.errors import MeshServeError

__all__ = ["Background", "Spawn"]


class Spawn(Protocol):
    """Run a coroutine in the background (``Background.spawn``)."""

    def __call__(self, coro: Awaitable[object], name: str) -> None: ...


class Background:
    """Tasks run until they end or :meth:`close` cancels them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[object], name: str) -> None:
        """Run ``coro`` in the background; its domain errors are dropped
        (whoever spawned it logs what matters), a crash is logged."""

        async def run() -> None:
            with contextlib.suppress(MeshServeError):
                await coro

        task = _tasks.start_supervised(run(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            await _tasks.cancel_and_wait(task)
