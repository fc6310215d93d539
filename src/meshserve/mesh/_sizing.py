"""How far a runtime's size estimates overshoot what its loads measure.

The cache makes room for a model before loading it, from the runtime's
estimate; for small models that estimate can be several times the measured
size (skops: 1.3x the file + 256 KiB), so each first load would evict far
more than it needs. Scaling estimates by the ratio seen so far keeps that
in proportion; a load measured bigger than reserved settles the difference
at once (``mesh/_cache.py``).
"""

from __future__ import annotations

__all__ = ["SizeRatio"]


class SizeRatio:
    """Measured size over the runtime's estimate, smoothed over recent loads,
    at most 1: what a new model's estimate is scaled by before room is made
    for it."""

    _WEIGHT = 0.2
    """Weight of the newest load: a handful of loads settle the ratio."""
    _FLOOR = 0.1
    """An estimate is never scaled below a tenth (a runtime that measured
    nothing must not make every later reservation vanish)."""

    def __init__(self) -> None:
        self.value = 1.0
        self._seen = False

    def learn(self, ratio: float) -> None:
        ratio = min(1.0, max(self._FLOOR, ratio))
        if not self._seen:
            self.value, self._seen = ratio, True
        else:
            self.value += self._WEIGHT * (ratio - self.value)
