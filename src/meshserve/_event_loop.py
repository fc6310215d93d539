"""Which asyncio event loop meshserve's servers run on.

uvloop by default where it is installed (a dependency on Linux and macOS):
it runs the loop's own machinery (scheduling callbacks, starting tasks,
waking on I/O) in compiled code, where asyncio's runs in Python; grpc.aio
schedules several callbacks and tasks for every call, so on the request path
that cuts the CPU per request by about a quarter (docs/benchmarks.md).
``server.eventLoop: asyncio`` keeps the standard loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["EventLoop", "run", "uvloop_available"]

log = logging.getLogger(__name__)

EventLoop = Literal["uvloop", "asyncio"]
"""``server.eventLoop``: uvloop (when installed), or asyncio's own."""

_T = TypeVar("_T")


def uvloop_available() -> bool:
    """Whether uvloop can be imported here."""
    return importlib.util.find_spec("uvloop") is not None


def run(main: Coroutine[Any, Any, _T], *, loop: EventLoop = "uvloop") -> _T:
    """Run ``main`` to completion on a new event loop of kind ``loop``
    (asyncio's when uvloop is asked for but not installed), as
    ``asyncio.run`` does."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.info("uvloop is not installed: running on asyncio's event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)
