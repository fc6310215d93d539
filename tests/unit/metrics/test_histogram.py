"""meshserve.metrics._histogram: the same exposition as prometheus_client's
Histogram for the same observations, at a fraction of the cost."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Histogram as ClientHistogram
from prometheus_client.registry import Collector

from meshserve.metrics._histogram import Histogram

BOUNDS = (0.5, 1, 2, 5, 75, 300_000, 128 * 4.0**7)
# On a bound, between bounds, below the first, beyond the last, 0, huge.
AMOUNTS = (0.5, 0.7, 1.0, 2.5, 0.0, 74.99, 75.0, 299_999.9, 300_001.0, 1e12, 3.0, 0.1)


def _text(collector: Collector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    lines = generate_latest(registry).decode().splitlines()
    # prometheus_client adds a *_created series per label set (the
    # exporter drops it anyway): compare the rest.
    return "\n".join(line for line in lines if "_created" not in line)


@pytest.mark.parametrize("labelnames", [(), ("method", "code")])
def test_renders_what_prometheus_client_renders(labelnames: tuple[str, ...]) -> None:
    ours = Histogram("h_ms", "A histogram.", labelnames, BOUNDS)
    theirs = ClientHistogram("h_ms", "A histogram.", labelnames, registry=None, buckets=BOUNDS)
    assert _text(ours) == _text(theirs)  # nothing observed yet
    series = [("ModelInfer", "OK"), ("ModelInfer", "NOT_FOUND")] if labelnames else [()]
    for index, amount in enumerate(AMOUNTS):
        labels = series[index % len(series)]
        ours.observe(labels, amount)
        (theirs.labels(*labels) if labels else theirs).observe(amount)
    assert _text(ours) == _text(theirs)
    assert 'le="+Inf"' in _text(ours)


def test_nan_counts_in_the_sum_only_as_prometheus_client() -> None:
    ours = Histogram("h", "h", (), (1.0,))
    theirs = ClientHistogram("h", "h", registry=None, buckets=(1.0,))
    ours.observe((), math.nan)
    theirs.observe(math.nan)
    assert _text(ours) == _text(theirs)


def test_wrong_label_count_is_refused() -> None:
    histogram = Histogram("h", "h", ("method",), (1.0,))
    with pytest.raises(ValueError, match="labels"):
        histogram.observe(("a", "b"), 1.0)


def test_bounds_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="increasing"):
        Histogram("h", "h", (), (2.0, 1.0))
