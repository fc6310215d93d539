"""Clocks, injected so that lease expiry can be tested with fake time."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Where the store reads the time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for local intervals."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch, shared by processes on one machine."""


class SystemClock:
    """The real clocks of this machine."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to (for tests and simulations)."""

    def __init__(self, *, start_time: float = 1_700_000_000.0) -> None:
        self._time = start_time
        self._monotonic = 0.0

    def monotonic(self) -> float:
        return self._monotonic

    def time(self) -> float:
        return self._time

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        self._time += seconds
        self._monotonic += seconds
