"""Prometheus metrics under KServe ModelMesh's ``modelmesh_*`` names, so that
dashboards and alerts written for ModelMesh keep working.

The mesh reports events through intent-named methods (``observe_load``,
``load_failed``, ``set_instance``...); :class:`Metrics` turns them into
metrics in a registry of its own (never prometheus_client's global one, so
several instances can live in one process), :class:`NullMetrics` ignores
them. Both satisfy :class:`MetricsRecorder`, the type the mesh should accept.

What is exported, and what each metric means (names, units, buckets and
labels as ModelMesh's ``Metric.java`` / ``Metrics.java`` define them)::

    name                                        type       unit  meaning
    modelmesh_invoke_model_milliseconds         histogram  ms    one call into the local runtime
                                                                 (method, code)
    modelmesh_api_request_milliseconds          histogram  ms    one external inference request,
                                                                 end to end (method, code)
    modelmesh_request_size_bytes                histogram  B     inference request payload
                                                                 (method, code)
    modelmesh_response_size_bytes               histogram  B     inference response payload
                                                                 (method, code)
    modelmesh_cache_miss_milliseconds           histogram  ms    delay a request spent waiting for
                                                                 its model to be loaded
    modelmesh_loadmodel_milliseconds            histogram  ms    one successful model load
    modelmesh_loadmodel_failure                 counter    1     failed model loads
    modelmesh_unloadmodel_milliseconds          histogram  ms    one model unload
    modelmesh_unloadmodel_failure               counter    1     failed unloads (one per copy, not
                                                                 per attempt)
    modelmesh_unloadmodel_attempt_failure       counter    1     failed unload attempts
    modelmesh_req_queue_delay_milliseconds      histogram  ms    time a request queued for a
                                                                 concurrency slot of its model
    modelmesh_loading_queue_delay_milliseconds  histogram  ms    time a load queued for a loading
                                                                 slot
    modelmesh_model_sizing_milliseconds         histogram  ms    time taken to size a model
    modelmesh_age_at_eviction_milliseconds      histogram  ms    time since last use of an evicted
                                                                 copy
    modelmesh_loaded_model_size_bytes           histogram  B     reported size of a loaded model
    meshserve_model_pull_milliseconds           histogram  ms    time to pull a model from storage
                                                                 (meshserve's own; ModelMesh's
                                                                 adapters pull inside a load)
    meshserve_auth_denied                       counter    1     calls refused by authentication
                                                                 (kind=unauthenticated) or
                                                                 authorisation (kind=forbidden)
    meshserve_model_pull_bytes                  histogram  B     bytes of a model pulled from
                                                                 storage
    meshserve_limit_rejected                    counter    1     requests, registrations and loads
                                                                 refused by a limit (limit=rate,
                                                                 models_per_namespace,
                                                                 namespace_bytes,
                                                                 inflight_bytes)
    modelmesh_models_loaded_total               gauge      1     models with >= 1 loaded copy
                                                                 (cluster-wide, leader only)
    modelmesh_models_with_failure_total         gauge      1     models with recent load failures
                                                                 (cluster-wide, leader only)
    modelmesh_models_managed_total              gauge      1     registered models (cluster-wide,
                                                                 leader only)
    modelmesh_instance_lru_seconds              gauge      s     epoch time of the last use of this
                                                                 instance's least recently used copy
    modelmesh_instance_lru_age_seconds          gauge      s     how long ago that was
    modelmesh_instance_capacity_bytes           gauge      B     model capacity of this instance
                                                                 (excluding the unload buffer)
    modelmesh_instance_used_bytes               gauge      B     capacity in use by loaded models
    modelmesh_instance_used_bps                 gauge      bp    used / capacity in basis points
                                                                 (0..10000; not bytes per second)
    modelmesh_instance_models_total             gauge      1     model copies loaded here

Labels: ``method`` (the short RPC name, e.g. ``ModelInfer``) and ``code``
(the gRPC status name, ``OK`` on success) on the four request metrics. With
``per_model=True`` every histogram also gets ``modelId`` (the vmodel id when
the request named one), as ModelMesh's ``per_model_metrics`` does; it is off
by default because each model multiplies the number of series.

Two deliberate differences from prometheus_client's defaults keep the
exposition identical to ModelMesh's (it uses Java simpleclient 0.9):

- The three counters are exported under their plain names
  (``modelmesh_loadmodel_failure``, no ``_total``), which is what
  ModelMesh's series are called. prometheus_client only writes counters
  with a ``_total`` suffix, so these are typed ``untyped``; ``rate()`` and
  ``increase()`` treat them the same.
- No ``*_created`` series are exported.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "MetricsRecorder",
    "NullMetrics",
    "SupportsRender",
    "used_basis_points",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of :meth:`Metrics.render`'s output."""

_SECOND_MS = 1_000.0
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS

# ModelMesh's buckets, kept so that histogram_quantile() over a mixed fleet
# (or a dashboard with fixed `le` thresholds) reads the same.
_TIME_BUCKETS_MS = (
    0.5, 1, 2, 5, 10, 20, 50, 75, 100, 200, 500, 1_000, 2_000,
    5_000, 10_000, 20_000, 60_000, 120_000, 300_000,
)  # fmt: skip
_AGE_BUCKETS_MS = (
    30 * _SECOND_MS, 5 * _MINUTE_MS, 15 * _MINUTE_MS, _HOUR_MS, 4 * _HOUR_MS,
    12 * _HOUR_MS, _DAY_MS, 7 * _DAY_MS, 30 * _DAY_MS, 90 * _DAY_MS,
)  # fmt: skip
_MODEL_SIZE_BUCKETS = tuple(256 * 1024 * 4.0**i for i in range(8))  # 256 KiB .. 4 GiB
_MESSAGE_SIZE_BUCKETS = tuple(128 * 4.0**i for i in range(8))  # 128 B .. 2 MiB

# ModelMesh's "no LRU entry" value: Long.MAX_VALUE ms, in seconds.
_NO_LRU_S = (2**63 - 1) // 1000

_BASIS_POINTS = 10_000

_REQUEST_LABELS = ("method", "code")
_MODEL_LABEL = "modelId"


def used_basis_points(used_bytes: int, capacity_bytes: int) -> int:
    """``used / capacity`` in hundredths of a percent (0 when there is no
    capacity), as ``modelmesh_instance_used_bps`` reports it."""
    if capacity_bytes <= 0:
        return 0
    return int(used_bytes / capacity_bytes * _BASIS_POINTS)


def _short_method(method: str) -> str:
    # ModelMesh's default (fq_names off) keeps the part after the service:
    # "inference.GRPCInferenceService/ModelInfer" -> "ModelInfer".
    return method.rpartition("/")[2]


def _code_name(code: str | enum.Enum) -> str:
    # grpc.StatusCode.OK.name == "OK": accept the enum without importing grpc.
    return code.name if isinstance(code, enum.Enum) else code


class SupportsRender(Protocol):
    """Something whose metrics can be scraped."""

    def render(self) -> bytes:
        """The current metrics in the Prometheus text format (0.0.4)."""
        ...


class MetricsRecorder(SupportsRender, Protocol):
    """What the mesh reports; :class:`Metrics` and :class:`NullMetrics` both
    implement it. Durations are milliseconds, sizes bytes. ``model_id`` is
    used only when per-model labels are on."""

    def observe_invoke(
        self, ms: float, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        """A call into the local runtime finished."""
        ...

    def observe_api_request(
        self, ms: float, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        """An external inference request finished."""
        ...

    def observe_request_size(
        self, size_bytes: int, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        """The payload size of an external inference request."""
        ...

    def observe_response_size(
        self, size_bytes: int, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        """The payload size of its response."""
        ...

    def observe_cache_miss(self, ms: float, *, model_id: str | None = None) -> None:
        """A request waited ``ms`` for its model to be loaded."""
        ...

    def observe_load(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        """A model loaded in ``ms``, measuring ``size_bytes``."""
        ...

    def load_failed(self) -> None:
        """A model load failed."""
        ...

    def observe_unload(self, ms: float, *, model_id: str | None = None) -> None:
        """A model was unloaded in ``ms``."""
        ...

    def unload_failed(self) -> None:
        """A copy could not be unloaded (counted once per copy)."""
        ...

    def unload_attempt_failed(self) -> None:
        """One unload attempt failed (it may be retried)."""
        ...

    def observe_eviction(self, age_ms: float, *, model_id: str | None = None) -> None:
        """A copy last used ``age_ms`` ago was evicted."""
        ...

    def observe_sizing(self, ms: float, *, model_id: str | None = None) -> None:
        """Sizing a model (predicted or measured size) took ``ms``."""
        ...

    def observe_pull(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        """Pulling ``size_bytes`` of a model's artifact from storage took ``ms``."""
        ...

    def auth_denied(self, kind: str, method: str) -> None:
        """A call was refused: ``unauthenticated`` or ``forbidden``."""
        ...

    def limit_rejected(self, limit: str) -> None:
        """Something was refused by a limit: ``rate``, ``models_per_namespace``,
        ``namespace_bytes`` or ``inflight_bytes`` (the decode budget)."""
        ...

    def observe_loading_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        """A load waited ``ms`` for a loading slot."""
        ...

    def observe_req_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        """A request waited ``ms`` for a concurrency slot of its model."""
        ...

    def set_instance(
        self,
        *,
        capacity_bytes: int,
        used_bytes: int,
        model_copies: int,
        lru_last_used_ms: int | None,
        now_ms: int,
    ) -> None:
        """This instance's cache: its capacity, the bytes and copies in it,
        and when its least recently used copy was last used (``None`` when
        empty)."""
        ...

    def set_cluster(
        self, *, models_loaded: int, models_managed: int, models_with_failure: int
    ) -> None:
        """Cluster-wide model counts; only the leader reports them."""
        ...

    def clear_cluster(self) -> None:
        """Stop exporting the cluster-wide counts (leadership was lost)."""
        ...


class Metrics:
    """ModelMesh-named Prometheus metrics in a registry of their own.

    Implements :class:`MetricsRecorder`; :meth:`render` gives the
    exposition text for the ``/metrics`` endpoint.
    """

    def __init__(self, *, per_model: bool = False) -> None:
        """``per_model`` adds a ``modelId`` label to every histogram."""
        self._per_model = per_model
        self.registry = CollectorRegistry()
        """The registry behind :meth:`render`; more collectors may be added."""
        request_labels = (*_REQUEST_LABELS, _MODEL_LABEL) if per_model else _REQUEST_LABELS
        model_labels = (_MODEL_LABEL,) if per_model else ()

        def histogram(
            name: str, doc: str, buckets: Sequence[float], labels: Sequence[str]
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

        def counter(name: str, doc: str) -> _PlainCounter:
            collector = _PlainCounter(name, doc)
            self.registry.register(collector)
            return collector

        def gauge(name: str, doc: str, *, registered: bool = True) -> Gauge:
            return Gauge(name, doc, registry=self.registry if registered else None)

        self._invoke = histogram(
            "modelmesh_invoke_model_milliseconds",
            "Internal model server inference request time",
            _TIME_BUCKETS_MS,
            request_labels,
        )
        self._api_request = histogram(
            "modelmesh_api_request_milliseconds",
            "External inference request time",
            _TIME_BUCKETS_MS,
            request_labels,
        )
        self._request_size = histogram(
            "modelmesh_request_size_bytes",
            "Inference request payload size",
            _MESSAGE_SIZE_BUCKETS,
            request_labels,
        )
        self._response_size = histogram(
            "modelmesh_response_size_bytes",
            "Inference response payload size",
            _MESSAGE_SIZE_BUCKETS,
            request_labels,
        )
        self._cache_miss = histogram(
            "modelmesh_cache_miss_milliseconds", "Cache miss delay", _TIME_BUCKETS_MS, model_labels
        )
        self._load = histogram(
            "modelmesh_loadmodel_milliseconds",
            "Time taken to load model",
            _TIME_BUCKETS_MS,
            model_labels,
        )
        self._unload = histogram(
            "modelmesh_unloadmodel_milliseconds",
            "Time taken to unload model",
            _TIME_BUCKETS_MS,
            model_labels,
        )
        self._req_queue_delay = histogram(
            "modelmesh_req_queue_delay_milliseconds",
            "Time spent in inference request queue",
            _TIME_BUCKETS_MS,
            model_labels,
        )
        self._loading_queue_delay = histogram(
            "modelmesh_loading_queue_delay_milliseconds",
            "Time spent in model loading queue",
            _TIME_BUCKETS_MS,
            model_labels,
        )
        self._sizing = histogram(
            "modelmesh_model_sizing_milliseconds",
            "Time taken to perform model sizing",
            _TIME_BUCKETS_MS,
            model_labels,
        )
        self._age_at_eviction = histogram(
            "modelmesh_age_at_eviction_milliseconds",
            "Time since model was last used when evicted",
            _AGE_BUCKETS_MS,
            model_labels,
        )
        self._loaded_size = histogram(
            "modelmesh_loaded_model_size_bytes",
            "Reported size of loaded model",
            _MODEL_SIZE_BUCKETS,
            model_labels,
        )
        self._pull = histogram(
            "meshserve_model_pull_milliseconds",
            "Time to pull a model's artifact from storage",
            _TIME_BUCKETS_MS,
            model_labels,
        )
        self._pull_size = histogram(
            "meshserve_model_pull_bytes",
            "Bytes of a model's artifact pulled from storage",
            _MODEL_SIZE_BUCKETS,
            model_labels,
        )
        self._auth_denied = Counter(
            "meshserve_auth_denied",
            "Calls refused by authentication or authorisation",
            ("kind", "method"),
            registry=self.registry,
        )
        self._limit_rejected = Counter(
            "meshserve_limit_rejected",
            "Requests, registrations and loads refused by a limit",
            ("limit",),
            registry=self.registry,
        )
        self._load_failures = counter("modelmesh_loadmodel_failure", "Model load failures")
        self._unload_failures = counter(
            "modelmesh_unloadmodel_failure",
            "Unload model failures (not counting multiple attempts for same copy)",
        )
        self._unload_attempt_failures = counter(
            "modelmesh_unloadmodel_attempt_failure", "Unload model attempt failures"
        )
        self._lru_time = gauge(
            "modelmesh_instance_lru_seconds",
            "Last used time of least recently used model in pod (in secs since epoch)",
        )
        self._lru_age = gauge(
            "modelmesh_instance_lru_age_seconds",
            "Last used age of least recently used model in pod (secs ago)",
        )
        self._capacity = gauge(
            "modelmesh_instance_capacity_bytes",
            "Effective model capacity of pod excluding unload buffer",
        )
        self._used = gauge(
            "modelmesh_instance_used_bytes", "Amount of capacity currently in use by loaded models"
        )
        self._used_bps = gauge(
            "modelmesh_instance_used_bps",
            "Amount of capacity used in basis points (100ths of percent)",
        )
        self._copies = gauge(
            "modelmesh_instance_models_total", "Number of model copies loaded in pod"
        )
        # Cluster-wide: only the leader exports them, so that sums over pods
        # stay right; registered by set_cluster(), dropped by clear_cluster().
        self._cluster_gauges = (
            gauge(
                "modelmesh_models_loaded_total",
                "Total number of models with at least one loaded copy",
                registered=False,
            ),
            gauge(
                "modelmesh_models_managed_total", "Total number of models managed", registered=False
            ),
            gauge(
                "modelmesh_models_with_failure_total",
                "Total number of models with one or more recent load failures",
                registered=False,
            ),
        )
        self._cluster_registered = False
        self._cluster_lock = threading.Lock()
        self._lru_time.set(_NO_LRU_S)

    @property
    def per_model(self) -> bool:
        """Whether histograms carry a ``modelId`` label."""
        return self._per_model

    # -- requests ------------------------------------------------------------

    def observe_invoke(
        self, ms: float, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        self._request_child(self._invoke, method, code, model_id).observe(ms)

    def observe_api_request(
        self, ms: float, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        self._request_child(self._api_request, method, code, model_id).observe(ms)

    def observe_request_size(
        self, size_bytes: int, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        self._request_child(self._request_size, method, code, model_id).observe(size_bytes)

    def observe_response_size(
        self, size_bytes: int, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        self._request_child(self._response_size, method, code, model_id).observe(size_bytes)

    def observe_cache_miss(self, ms: float, *, model_id: str | None = None) -> None:
        self._model_child(self._cache_miss, model_id).observe(ms)

    def observe_req_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        self._model_child(self._req_queue_delay, model_id).observe(ms)

    # -- loading and unloading -----------------------------------------------

    def observe_load(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        self._model_child(self._load, model_id).observe(ms)
        self._model_child(self._loaded_size, model_id).observe(size_bytes)

    def observe_pull(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        self._model_child(self._pull, model_id).observe(ms)
        self._model_child(self._pull_size, model_id).observe(size_bytes)

    def auth_denied(self, kind: str, method: str) -> None:
        self._auth_denied.labels(kind=kind, method=method).inc()

    def limit_rejected(self, limit: str) -> None:
        self._limit_rejected.labels(limit=limit).inc()

    def load_failed(self) -> None:
        self._load_failures.inc()

    def observe_unload(self, ms: float, *, model_id: str | None = None) -> None:
        self._model_child(self._unload, model_id).observe(ms)

    def unload_failed(self) -> None:
        self._unload_failures.inc()

    def unload_attempt_failed(self) -> None:
        self._unload_attempt_failures.inc()

    def observe_eviction(self, age_ms: float, *, model_id: str | None = None) -> None:
        self._model_child(self._age_at_eviction, model_id).observe(age_ms)

    def observe_sizing(self, ms: float, *, model_id: str | None = None) -> None:
        self._model_child(self._sizing, model_id).observe(ms)

    def observe_loading_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        self._model_child(self._loading_queue_delay, model_id).observe(ms)

    # -- state ---------------------------------------------------------------

    def set_instance(
        self,
        *,
        capacity_bytes: int,
        used_bytes: int,
        model_copies: int,
        lru_last_used_ms: int | None,
        now_ms: int,
    ) -> None:
        self._capacity.set(capacity_bytes)
        self._used.set(used_bytes)
        self._used_bps.set(used_basis_points(used_bytes, capacity_bytes))
        self._copies.set(model_copies)
        if lru_last_used_ms is None or lru_last_used_ms <= 0:
            # As ModelMesh: an empty cache's LRU time is "never" (the far
            # future, so min() over pods ignores it) and its age 0.
            self._lru_time.set(_NO_LRU_S)
            self._lru_age.set(0)
        else:
            self._lru_time.set(lru_last_used_ms // 1000)
            self._lru_age.set(max(0, now_ms - lru_last_used_ms) // 1000)

    def set_cluster(
        self, *, models_loaded: int, models_managed: int, models_with_failure: int
    ) -> None:
        with self._cluster_lock:
            if not self._cluster_registered:
                for collector in self._cluster_gauges:
                    self.registry.register(collector)
                self._cluster_registered = True
        loaded, managed, failed = self._cluster_gauges
        loaded.set(models_loaded)
        managed.set(models_managed)
        failed.set(models_with_failure)

    def clear_cluster(self) -> None:
        with self._cluster_lock:
            if self._cluster_registered:
                for collector in self._cluster_gauges:
                    self.registry.unregister(collector)
                self._cluster_registered = False

    # -- exposition ----------------------------------------------------------

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (:data:`CONTENT_TYPE`)."""
        return generate_latest(_WithoutCreated(self.registry))

    # -- helpers -------------------------------------------------------------

    def _request_child(
        self, histogram: Histogram, method: str, code: str | enum.Enum, model_id: str | None
    ) -> Histogram:
        labels = [_short_method(method), _code_name(code)]
        if self._per_model:
            labels.append(model_id or "")
        return histogram.labels(*labels)

    def _model_child(self, histogram: Histogram, model_id: str | None) -> Histogram:
        return histogram.labels(model_id or "") if self._per_model else histogram


class NullMetrics:
    """A :class:`MetricsRecorder` that records nothing (tests, embedding)."""

    per_model = False

    def observe_invoke(
        self, ms: float, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        pass

    def observe_api_request(
        self, ms: float, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        pass

    def observe_request_size(
        self, size_bytes: int, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        pass

    def observe_response_size(
        self, size_bytes: int, *, method: str, code: str | enum.Enum, model_id: str | None = None
    ) -> None:
        pass

    def observe_cache_miss(self, ms: float, *, model_id: str | None = None) -> None:
        pass

    def observe_req_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        pass

    def observe_load(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        pass

    def load_failed(self) -> None:
        pass

    def observe_unload(self, ms: float, *, model_id: str | None = None) -> None:
        pass

    def unload_failed(self) -> None:
        pass

    def unload_attempt_failed(self) -> None:
        pass

    def observe_eviction(self, age_ms: float, *, model_id: str | None = None) -> None:
        pass

    def observe_sizing(self, ms: float, *, model_id: str | None = None) -> None:
        pass

    def observe_pull(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        pass

    def auth_denied(self, kind: str, method: str) -> None:
        pass

    def limit_rejected(self, limit: str) -> None:
        pass

    def observe_loading_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        pass

    def set_instance(
        self,
        *,
        capacity_bytes: int,
        used_bytes: int,
        model_copies: int,
        lru_last_used_ms: int | None,
        now_ms: int,
    ) -> None:
        pass

    def set_cluster(
        self, *, models_loaded: int, models_managed: int, models_with_failure: int
    ) -> None:
        pass

    def clear_cluster(self) -> None:
        pass

    def render(self) -> bytes:
        return b""


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
