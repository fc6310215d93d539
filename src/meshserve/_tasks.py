"""Owned background tasks: started with a name, logged when they end, and
cancelled (and awaited) by whoever started them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "first_of", "start_supervised"]

_log = logging.getLogger("meshserve.tasks")
_T = TypeVar("_T")


def start_supervised(coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
    """Start ``coro`` as a task whose crash is logged instead of lost.

    The caller owns the task and must ``cancel_and_wait`` it.
    """
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_log_exit)
    return task


def _log_exit(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        _log.debug("background task %s finished", task.get_name())
    else:
        _log.error("background task %s crashed", task.get_name(), exc_info=exc)


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished.

    The task's own CancelledError is swallowed, so this works in cleanup code
    that runs because the caller is being cancelled; a new cancellation of
    the caller while it waits still propagates.
    """
    current = asyncio.current_task()
    pending_before = 0 if current is None else current.cancelling()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > pending_before:
            raise
    except Exception:
        # Its failure was logged by start_supervised or raised by first_of.
        pass


async def first_of(*awaitables: Awaitable[Any]) -> None:
    """Wait until one of ``awaitables`` finishes, then cancel the others.

    An exception from the first to finish propagates.
    """
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # Fetch every exception so none is reported as "never retrieved".
        failures = [e for t in done if not t.cancelled() and (e := t.exception()) is not None]
        if failures:
            raise failures[0]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            await cancel_and_wait(task)
