"""Log lines that a client can cause, at most one per interval per kind.

A server that logs each bad request lets any client fill its disk and bury
the lines that matter. :class:`LimitedLog` writes the first line of a kind,
drops the others for ``interval_s`` and says how many it dropped in the next
line of that kind it writes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from meshserve._clock import Clock, SystemClock

__all__ = ["LimitedLog"]


@dataclass(slots=True)
class _Kind:
    next_at: float
    suppressed: int = 0


class LimitedLog:
    """One ``logger``'s lines, rate-limited per kind (thread-safe: predict
    workers log too)."""

    def __init__(
        self, logger: logging.Logger, *, interval_s: float = 60.0, clock: Clock | None = None
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock or SystemClock()
        self._kinds: dict[str, _Kind] = {}
        self._lock = threading.Lock()

    def log(
        self,
        level: int,
        kind: str,
        message: str,
        *args: object,
        exc_info: BaseException | None = None,
    ) -> bool:
        """Log ``message % args`` unless a line of ``kind`` went out less than
        ``interval_s`` ago; True when it was written. ``exc_info`` adds a
        traceback to the lines written (for unexpected errors: one traceback
        per interval is enough to find the bug). ``kind`` is a name the code
        chooses, never a client's value: each kind is remembered."""
        now = self._clock.monotonic()
        with self._lock:
            state = self._kinds.get(kind)
            if state is not None and now < state.next_at:
                state.suppressed += 1
                return False
            suppressed = state.suppressed if state is not None else 0
            self._kinds[kind] = _Kind(next_at=now + self._interval_s)
        if suppressed:
            message += " (%d more like it since the last one, not logged)"
            args = (*args, suppressed)
        self._logger.log(level, message, *args, exc_info=exc_info)
        return True
