"""The catalog's metrics as Prometheus collectors, in a registry of their own
(never prometheus_client's global one, so that several instances can live in
one process).

Two deliberate differences from prometheus_client's defaults keep the
exposition identical to ModelMesh's (it uses Java simpleclient 0.9):

- ModelMesh's counters are exported under their plain names
  (``modelmesh_loadmodel_failure``, no ``_total``), which is what
  ModelMesh's series are called. prometheus_client only writes counters
  with a ``_total`` suffix, so these are typed ``untyped``; ``rate()`` and
  ``increase()`` treat them the same.
- No ``*_created`` series are exported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from meshserve.metrics._catalog import CATALOG, MODEL_LABELS, Kind, MetricSpec
from meshserve.metrics._histogram import Histogram
from meshserve.metrics._recorder import MetricsRecorder

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of :meth:`Metrics.render`'s output."""


class Metrics(MetricsRecorder):
    """ModelMesh-named Prometheus metrics, built from the catalog.

    :meth:`render` gives the exposition text for the ``/metrics`` endpoint.
    """

    def __init__(self, *, per_model: bool = False) -> None:
        """``per_model`` adds ``modelId`` and ``vModelId`` labels to every histogram."""
        self._per_model = per_model
        self.registry = CollectorRegistry()
        """The registry behind :meth:`render`; more collectors may be added."""
        self._histograms: dict[str, Histogram] = {}
        self._counters: dict[str, Counter] = {}
        self._plain_counters: dict[str, _PlainCounter] = {}
        self._gauges: dict[str, Gauge] = {}
        # Leader-only gauges are registered by their first _set() and
        # unregistered by _withdraw(), under this lock.
        self._shown: set[str] = set()
        self._shown_lock = threading.Lock()
        for spec in CATALOG:
            self._build(spec)

    @property
    def per_model(self) -> bool:
        """Whether histograms carry the ``modelId`` and ``vModelId`` labels."""
        return self._per_model

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(_WithoutCreated(self.registry))

    def _build(self, spec: MetricSpec) -> None:
        registry = self.registry
        match spec.kind:
            case Kind.HISTOGRAM:
                labels = (*spec.labels, *MODEL_LABELS) if self._per_model else spec.labels
                # Ours, not prometheus_client's: observed on every request.
                histogram = Histogram(spec.name, spec.help, labels, spec.buckets)
                registry.register(histogram)
                self._histograms[spec.name] = histogram
            case Kind.COUNTER:
                self._counters[spec.name] = Counter(
                    spec.name, spec.help, spec.labels, registry=registry
                )
            case Kind.PLAIN_COUNTER:
                counter = _PlainCounter(spec.name, spec.help)
                registry.register(counter)
                self._plain_counters[spec.name] = counter
            case Kind.GAUGE:
                gauge = Gauge(spec.name, spec.help, registry=None)
                gauge.set(spec.initial)
                if not spec.leader_only:
                    registry.register(gauge)
                self._gauges[spec.name] = gauge

    def _observe(
        self,
        spec: MetricSpec,
        amount: float,
        labels: tuple[str, ...],
        model_id: str | None,
        vmodel_id: str | None = None,
    ) -> None:
        if self._per_model:
            labels = (*labels, model_id or "", vmodel_id or "")
        self._histograms[spec.name].observe(labels, amount)

    def _count(self, spec: MetricSpec, labels: tuple[str, ...] = ()) -> None:
        if spec.kind is Kind.PLAIN_COUNTER:
            self._plain_counters[spec.name].inc()
        else:
            self._counters[spec.name].labels(*labels).inc()

    def _set(self, spec: MetricSpec, value: float) -> None:
        gauge = self._gauges[spec.name]
        if spec.leader_only:
            with self._shown_lock:
                if spec.name not in self._shown:
                    self.registry.register(gauge)
                    self._shown.add(spec.name)
        gauge.set(value)

    def _withdraw(self, spec: MetricSpec) -> None:
        with self._shown_lock:
            if spec.name in self._shown:
                self.registry.unregister(self._gauges[spec.name])
                self._shown.discard(spec.name)


class _PlainCounter(Collector):
    """A counter exported under its bare name (ModelMesh's spelling, no
    ``_total``), typed ``untyped`` since the text format ties ``counter``
    to the suffix."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self._value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self._value += amount

    def collect(self) -> Iterable[Metric]:
        metric = Metric(self._name, self._documentation, "unknown")
        with self._lock:
            metric.add_sample(self._name, {}, self._value)
        return [metric]

    def describe(self) -> Iterable[Metric]:
        return [Metric(self._name, self._documentation, "unknown")]


class _WithoutCreated(Collector):
    """``registry``'s metrics minus the ``*_created`` samples
    prometheus_client adds (ModelMesh exports none; they only add series)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.type not in ("counter", "histogram", "summary"):
                yield metric
                continue
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield kept
