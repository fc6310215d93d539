"""Events: a callback point made before whoever listens to it.

A part built early (the runtime, the puller) is handed an event's ``emit``
as its callback; the part that reacts (the instance, built on top of them)
subscribes once it exists. Nothing holds a half-built object, and a
listener that fails is logged without silencing the others.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["AsyncEvent", "Event"]

_log = logging.getLogger("meshserve.events")
_T = TypeVar("_T")


class Event(Generic[_T]):
    """Calls each subscriber with the value emitted, in subscription order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[[_T], object]] = []

    def subscribe(self, listener: Callable[[_T], object]) -> None:
        self._listeners.append(listener)

    def emit(self, value: _T) -> None:
        for listener in list(self._listeners):
            try:
                listener(value)
            except Exception:
                _log.exception("a listener of %s failed", self.name)


class AsyncEvent:
    """Awaits each subscriber in turn, in subscription order."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Callable[[], Awaitable[None]]] = []

    def subscribe(self, listener: Callable[[], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def emit(self) -> None:
        for listener in list(self._listeners):
            try:
                await listener()
            except Exception:
                _log.exception("a listener of %s failed", self.name)
