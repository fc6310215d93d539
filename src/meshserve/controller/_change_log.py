"""Log lines about a resource written once per change, not once per pass.

The controller looks at every resource every pass (a second or so): a
refused runtime or resource logged each time would bury every other line.
:class:`ChangeLog` writes a key's line when what it says differs from the
last line written for that key, and again after :meth:`ChangeLog.forget`
(the problem went away and came back).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["ChangeLog"]

K = TypeVar("K", bound=Hashable)


class ChangeLog(Generic[K]):
    """One ``logger``'s lines per key, each written when it changed."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._said: dict[K, str] = {}

    def log(
        self,
        level: int,
        key: K,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``message % args`` unless it is what was last logged for
        ``key``; True when it was written."""
        text = message % args if args else message
        if self._said.get(key) == text:
            return False
        self._said[key] = text
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True

    def forget(self, key: K) -> None:
        """``key`` is fine again: its next line is written whatever it says."""
        self._said.pop(key, None)

    def retain(self, keys: Iterable[K]) -> None:
        """Forget every key not in ``keys``."""
        kept = set(keys)
        for key in [k for k in self._said if k not in kept]:
            del self._said[key]
