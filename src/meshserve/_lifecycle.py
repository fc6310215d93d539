"""Explicit lifecycles: things that are started and stopped, also as
``async with``."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Service"]


class Service(abc.ABC):
    """Started by :meth:`start`, stopped by :meth:`stop`; ``async with``
    does both."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...
