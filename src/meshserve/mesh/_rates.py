"""Requests per minute per model, over a short sliding window."""

from __future__ import annotations

from collections import defaultdict

from meshserve._clock import Clock

__all__ = ["RateTracker"]

_BUCKETS = 6


class RateTracker:
    """Counts requests served here per model in ``_BUCKETS`` time buckets
    covering ``window_s``, and reports them scaled to a minute."""

    def __init__(self, *, clock: Clock, window_s: float) -> None:
        self._clock = clock
        self._window_s = window_s
        self._bucket_s = window_s / _BUCKETS
        self._counts: dict[str, dict[int, int]] = defaultdict(dict)

    def _bucket(self) -> int:
        return int(self._clock.monotonic() / self._bucket_s)

    def count(self, model_id: str) -> None:
        buckets = self._counts[model_id]
        bucket = self._bucket()
        buckets[bucket] = buckets.get(bucket, 0) + 1

    def rpm(self, model_id: str) -> int:
        buckets = self._counts.get(model_id)
        if not buckets:
            return 0
        oldest = self._bucket() - _BUCKETS + 1
        for bucket in [b for b in buckets if b < oldest]:
            del buckets[bucket]
        if not buckets:
            del self._counts[model_id]
            return 0
        return int(sum(buckets.values()) * 60 / self._window_s)

    def total_rpm(self) -> int:
        return sum(self.rpm(model_id) for model_id in list(self._counts))
