"""Requests per minute per model, over a short sliding window."""

from __future__ import annotations

from meshserve._clock import Clock

__all__ = ["RateTracker"]

_BUCKETS = 6


class RateTracker:
    """Counts requests served here per model in ``_BUCKETS`` time buckets
    covering ``window_s``, and reports them scaled to a minute.

    The instance's total is kept per bucket beside the per-model counts, and
    each bucket remembers which models it counted, so neither the total
    (read for every record this instance publishes) nor expiry walks every
    model that had traffic: with thousands of models both did, on the event
    loop, several times per rates pass.
    """

    def __init__(self, *, clock: Clock, window_s: float) -> None:
        self._clock = clock
        self._window_s = window_s
        self._bucket_s = window_s / _BUCKETS
        self._counts: dict[str, dict[int, int]] = {}
        self._totals: dict[int, int] = {}
        """Requests per bucket over every model."""
        self._counted: dict[int, set[str]] = {}
        """The models counted in each bucket, to forget them when it expires."""

    def _bucket(self) -> int:
        return int(self._clock.monotonic() / self._bucket_s)

    def _per_minute(self, requests: int) -> int:
        return int(requests * 60 / self._window_s)

    def _expire(self, bucket: int) -> None:
        """Drop buckets older than the window ending at ``bucket``."""
        oldest = bucket - _BUCKETS + 1
        for old in [b for b in self._totals if b < oldest]:
            del self._totals[old]
            for model_id in self._counted.pop(old, ()):
                buckets = self._counts.get(model_id)
                if buckets is None:
                    continue
                buckets.pop(old, None)
                if not buckets:
                    del self._counts[model_id]

    def count(self, model_id: str) -> None:
        bucket = self._bucket()
        if bucket not in self._totals:
            self._expire(bucket)
        buckets = self._counts.setdefault(model_id, {})
        buckets[bucket] = buckets.get(bucket, 0) + 1
        self._totals[bucket] = self._totals.get(bucket, 0) + 1
        self._counted.setdefault(bucket, set()).add(model_id)

    def rpm(self, model_id: str) -> int:
        self._expire(self._bucket())
        buckets = self._counts.get(model_id)
        if not buckets:
            return 0
        return self._per_minute(sum(buckets.values()))

    def total_rpm(self) -> int:
        self._expire(self._bucket())
        return self._per_minute(sum(self._totals.values()))

    def tracked(self) -> int:
        """Models with requests in the window (what this tracker holds)."""
        self._expire(self._bucket())
        return len(self._counts)
