"""A Prometheus histogram cheap enough to observe on every request.

prometheus_client's ``Histogram`` costs several microseconds per
observation: ``labels()`` validates and looks the series up under a lock,
and ``observe()`` walks the bounds one by one, taking a lock for the sum and
another for the bucket. The request path observes four histograms per
request, so :class:`Histogram` keeps per-series counts in plain lists (one
lock, the bucket found by bisection) and builds the samples only when
scraped, in the same form, order and number formatting as
prometheus_client's (a test compares the two expositions).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import utils
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["Histogram"]

_go_float: Callable[[float], str] = utils.floatToGoString
"""How prometheus_client writes an ``le`` (untyped there)."""


class Histogram(Collector):
    """A histogram with ``labelnames`` and upper ``bounds`` (``+Inf`` added
    when missing). Series appear at their first observation, except the
    one series of a histogram without labels, exported from the start (as
    prometheus_client does)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], bounds: Sequence[float]
    ) -> None:
        upper = [float(bound) for bound in bounds]
        if upper != sorted(upper):
            raise ValueError(f"{name}: bounds not in increasing order")
        if not upper or upper[-1] != math.inf:
            upper.append(math.inf)
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._bounds = upper
        self._les = [_go_float(bound) for bound in upper]
        self._with_sum = upper[0] >= 0
        # Per series: [sum, count of bucket 0, count of bucket 1, ...],
        # each observation counted in its own bucket (not cumulative).
        self._series: dict[tuple[str, ...], list[float]] = {}
        self._lock = threading.Lock()
        if not self._labelnames:
            self._series[()] = self._empty()

    def _empty(self) -> list[float]:
        return [0.0] * (len(self._bounds) + 1)

    def observe(self, labels: tuple[str, ...], amount: float) -> None:
        """Add ``amount`` to the series of ``labels`` (values in the order
        of ``labelnames``)."""
        row = self._series.get(labels)
        if row is None:
            if len(labels) != len(self._labelnames):
                raise ValueError(f"{self._name}: labels {self._labelnames}, got {labels!r}")
            with self._lock:
                row = self._series.setdefault(labels, self._empty())
        # The first bound >= amount; none for NaN, which only the sum gets
        # (as prometheus_client does).
        index = bisect.bisect_left(self._bounds, amount) if amount == amount else -1
        with self._lock:
            row[0] += amount
            if 0 <= index < len(self._bounds):
                row[index + 1] += 1

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._documentation, "histogram")
        with self._lock:
            series = [(labels, list(row)) for labels, row in self._series.items()]
        bucket, count, total = self._name + "_bucket", self._name + "_count", self._name + "_sum"
        for labels, row in series:
            named = dict(zip(self._labelnames, labels, strict=True))
            cumulative = 0.0
            for le, observed in zip(self._les, row[1:], strict=True):
                cumulative += observed
                metric.add_sample(bucket, {**named, "le": le}, cumulative)
            metric.add_sample(count, named, cumulative)
            if self._with_sum:
                metric.add_sample(total, named, row[0])
        return [metric]

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, "histogram")]
