"""Per-resource exponential backoff for the controller's reconcile pass.

A resource whose reconcile failed is tried again after a delay that doubles
per failure (``control.reconcileBackoffInitialS`` up to ``...MaxS``); until
then the pass reports the outcome of its last try without trying again, and
the other resources go on. A change to the resource (another fingerprint)
tries it at once, and so does :meth:`Backoff.clear` (a deleted resource may
have freed what the others waited for).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Backoff"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class _Failing(Generic[V]):
    fingerprint: str
    delay_s: float
    retry_at: float
    outcome: V


class Backoff(Generic[K, V]):
    """The failing keys, when each may be tried again, and what its last
    try gave."""

    def __init__(self, *, initial_s: float, max_s: float, clock: Callable[[], float]) -> None:
        """``clock``: monotonic seconds."""
        self._initial_s = min(initial_s, max_s)
        self._max_s = max_s
        self._clock = clock
        self._failing: dict[K, _Failing[V]] = {}

    def waiting(self, key: K, fingerprint: str) -> V | None:
        """The outcome of ``key``'s last failed try while its retry is not
        due yet; None: try it now (it never failed, its delay is over, or it
        changed since, which forgets its failures)."""
        failing = self._failing.get(key)
        if failing is None:
            return None
        if failing.fingerprint != fingerprint:
            del self._failing[key]
            return None
        return failing.outcome if self._clock() < failing.retry_at else None

    def failed(self, key: K, fingerprint: str, outcome: V) -> float:
        """Record a failed try; the delay (seconds) before the next one."""
        previous = self._failing.get(key)
        delay = self._initial_s
        if previous is not None and previous.fingerprint == fingerprint:
            delay = min(previous.delay_s * 2, self._max_s)
        self._failing[key] = _Failing(fingerprint, delay, self._clock() + delay, outcome)
        return delay

    def succeeded(self, key: K) -> None:
        self._failing.pop(key, None)

    def retain(self, keys: Iterable[K]) -> None:
        """Forget the keys not in ``keys`` (resources that are gone)."""
        kept = set(keys)
        for key in [k for k in self._failing if k not in kept]:
            del self._failing[key]

    def clear(self) -> None:
        """Every failing key may be tried at once (its next failure starts
        at the initial delay again)."""
        self._failing.clear()
