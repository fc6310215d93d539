"""Every metric meshserve exports, declared once as data.

The Prometheus exporter (``_prometheus.py``) builds its collectors from
:data:`CATALOG`; the recorder (``_recorder.py``) names these specs when it
reports an event. Adding a metric is adding a :class:`MetricSpec` here (and,
for a new kind of event, one method on the recorder).

Names, types, help texts, labels and buckets are ModelMesh's
(``Metric.java``, ``Metrics.java``), so that dashboards and alerts written for
ModelMesh keep working; ``meshserve_*`` metrics are meshserve's own.
docs/metrics.md explains each one (a test checks it names them all).
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = [
    "CATALOG",
    "MODEL_LABELS",
    "NO_LRU_S",
    "REQUEST_LABELS",
    "Kind",
    "MetricSpec",
]


class Kind(enum.Enum):
    """How a metric is exported."""

    HISTOGRAM = "histogram"
    """Labelled like the spec says, plus ``modelId`` and ``vModelId`` when per-model labels
    are on (as ModelMesh's ``per_model_metrics``)."""
    COUNTER = "counter"
    """A Prometheus counter: the sample is ``<name>_total``."""
    PLAIN_COUNTER = "plain_counter"
    """A counter under its bare name (ModelMesh's simpleclient 0.9 spelling,
    no ``_total``), so typed ``untyped``: the text format ties ``counter`` to
    the suffix. Never labelled."""
    GAUGE = "gauge"
    """A value that is set; never labelled."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetricSpec:
    """One exported metric."""

    name: str
    """The family name in the exposition."""
    kind: Kind
    help: str
    """The ``# HELP`` text (ModelMesh's description for its metrics)."""
    labels: tuple[str, ...] = ()
    """Label names, before the per-model ``modelId`` and ``vModelId``."""
    buckets: tuple[float, ...] = ()
    """Histogram upper bounds (histograms only)."""
    modelmesh: str | None = None
    """The ``Metric.java`` constant this mirrors; None for meshserve's own."""
    initial: float = 0.0
    """A gauge's value before anything is reported."""
    leader_only: bool = False
    """A cluster-wide gauge: exported only while this instance reports it
    (the leader), so that sums over instances count it once."""

    def __post_init__(self) -> None:
        if (self.kind is Kind.HISTOGRAM) != bool(self.buckets):
            raise ValueError(f"{self.name}: buckets go with histograms, and only them")
        if self.labels and self.kind in (Kind.PLAIN_COUNTER, Kind.GAUGE):
            raise ValueError(f"{self.name}: a {self.kind.value} takes no labels")
        if self.leader_only and self.kind is not Kind.GAUGE:
            raise ValueError(f"{self.name}: only gauges are leader-only")


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
_BATCH_SIZE_BUCKETS = tuple(2.0**i for i in range(9))  # 1 .. 256 requests

NO_LRU_S = (2**63 - 1) // 1000
"""ModelMesh's "no LRU entry" value: Java's ``Long.MAX_VALUE`` ms, in
seconds, so that ``min()`` over pods skips an empty one."""

REQUEST_LABELS = ("method", "code")
"""The short RPC name and the gRPC status name, on the request metrics."""
MODEL_LABELS = ("modelId", "vModelId")
"""Added to every histogram when per-model labels are on: the model's id and
the vmodel a request named (empty when it named none, and on the model
events: loads, unloads, evictions...)."""


# -- requests ------------------------------------------------------------------

INVOKE_MODEL_TIME = MetricSpec(
    name="modelmesh_invoke_model_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Internal model server inference request time",
    labels=REQUEST_LABELS,
    buckets=_TIME_BUCKETS_MS,
    modelmesh="INVOKE_MODEL_TIME",
)

API_REQUEST_TIME = MetricSpec(
    name="modelmesh_api_request_milliseconds",
    kind=Kind.HISTOGRAM,
    help="External inference request time",
    labels=REQUEST_LABELS,
    buckets=_TIME_BUCKETS_MS,
    modelmesh="API_REQUEST_TIME",
)

REQUEST_PAYLOAD_SIZE = MetricSpec(
    name="modelmesh_request_size_bytes",
    kind=Kind.HISTOGRAM,
    help="Inference request payload size",
    labels=REQUEST_LABELS,
    buckets=_MESSAGE_SIZE_BUCKETS,
    modelmesh="REQUEST_PAYLOAD_SIZE",
)

RESPONSE_PAYLOAD_SIZE = MetricSpec(
    name="modelmesh_response_size_bytes",
    kind=Kind.HISTOGRAM,
    help="Inference response payload size",
    labels=REQUEST_LABELS,
    buckets=_MESSAGE_SIZE_BUCKETS,
    modelmesh="RESPONSE_PAYLOAD_SIZE",
)

CACHE_MISS_DELAY = MetricSpec(
    name="modelmesh_cache_miss_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Cache miss delay",
    buckets=_TIME_BUCKETS_MS,
    modelmesh="CACHE_MISS_DELAY",
)

QUEUE_DELAY = MetricSpec(
    name="modelmesh_req_queue_delay_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time spent in inference request queue",
    buckets=_TIME_BUCKETS_MS,
    modelmesh="QUEUE_DELAY",
)

# -- loading and unloading -----------------------------------------------------

LOAD_MODEL_TIME = MetricSpec(
    name="modelmesh_loadmodel_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time taken to load model",
    buckets=_TIME_BUCKETS_MS,
    modelmesh="LOAD_MODEL_TIME",
)

UNLOAD_MODEL_TIME = MetricSpec(
    name="modelmesh_unloadmodel_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time taken to unload model",
    buckets=_TIME_BUCKETS_MS,
    modelmesh="UNLOAD_MODEL_TIME",
)

LOAD_MODEL_QUEUE_DELAY = MetricSpec(
    name="modelmesh_loading_queue_delay_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time spent in model loading queue",
    buckets=_TIME_BUCKETS_MS,
    modelmesh="LOAD_MODEL_QUEUE_DELAY",
)

MODEL_SIZING_TIME = MetricSpec(
    name="modelmesh_model_sizing_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time taken to perform model sizing",
    buckets=_TIME_BUCKETS_MS,
    modelmesh="MODEL_SIZING_TIME",
)

AGE_AT_EVICTION = MetricSpec(
    name="modelmesh_age_at_eviction_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time since model was last used when evicted",
    buckets=_AGE_BUCKETS_MS,
    modelmesh="AGE_AT_EVICTION",
)

LOADED_MODEL_SIZE = MetricSpec(
    name="modelmesh_loaded_model_size_bytes",
    kind=Kind.HISTOGRAM,
    help="Reported size of loaded model",
    buckets=_MODEL_SIZE_BUCKETS,
    modelmesh="LOADED_MODEL_SIZE",
)

LOAD_MODEL_FAILURE = MetricSpec(
    name="modelmesh_loadmodel_failure",
    kind=Kind.PLAIN_COUNTER,
    help="Model load failures",
    modelmesh="LOAD_MODEL_FAILURE",
)

UNLOAD_MODEL_FAILURE = MetricSpec(
    name="modelmesh_unloadmodel_failure",
    kind=Kind.PLAIN_COUNTER,
    help="Unload model failures (not counting multiple attempts for same copy)",
    modelmesh="UNLOAD_MODEL_FAILURE",
)

UNLOAD_MODEL_ATTEMPT_FAILURE = MetricSpec(
    name="modelmesh_unloadmodel_attempt_failure",
    kind=Kind.PLAIN_COUNTER,
    help="Unload model attempt failures",
    modelmesh="UNLOAD_MODEL_ATTEMPT_FAILURE",
)

# -- meshserve's own -----------------------------------------------------------

MODEL_PULL_TIME = MetricSpec(
    name="meshserve_model_pull_milliseconds",
    kind=Kind.HISTOGRAM,
    help="Time to pull a model's artifact from storage",
    buckets=_TIME_BUCKETS_MS,
)

MODEL_PULL_SIZE = MetricSpec(
    name="meshserve_model_pull_bytes",
    kind=Kind.HISTOGRAM,
    help="Bytes of a model's artifact pulled from storage",
    buckets=_MODEL_SIZE_BUCKETS,
)

BATCH_SIZE = MetricSpec(
    name="meshserve_batch_size",
    kind=Kind.HISTOGRAM,
    help="Requests merged into one call of the built-in runtime (adaptive batching)",
    buckets=_BATCH_SIZE_BUCKETS,
)

AUTH_DENIED = MetricSpec(
    name="meshserve_auth_denied",
    kind=Kind.COUNTER,
    help="Calls refused by authentication or authorisation",
    labels=("kind", "method"),
)

LIMIT_REJECTED = MetricSpec(
    name="meshserve_limit_rejected",
    kind=Kind.COUNTER,
    help="Requests, registrations and loads refused by a limit",
    labels=("limit",),
)

PAYLOADS_DROPPED = MetricSpec(
    name="meshserve_payloads_dropped",
    kind=Kind.COUNTER,
    help="Inference payloads a payload processor did not take (its queue was full, or it failed)",
    labels=("processor", "reason"),
)

# -- this instance -------------------------------------------------------------

INSTANCE_LRU_TIME = MetricSpec(
    name="modelmesh_instance_lru_seconds",
    kind=Kind.GAUGE,
    help="Last used time of least recently used model in pod (in secs since epoch)",
    modelmesh="INSTANCE_LRU_TIME",
    initial=NO_LRU_S,
)

INSTANCE_LRU_AGE = MetricSpec(
    name="modelmesh_instance_lru_age_seconds",
    kind=Kind.GAUGE,
    help="Last used age of least recently used model in pod (secs ago)",
    modelmesh="INSTANCE_LRU_AGE",
)

INSTANCE_CAPACITY = MetricSpec(
    name="modelmesh_instance_capacity_bytes",
    kind=Kind.GAUGE,
    help="Effective model capacity of pod excluding unload buffer",
    modelmesh="INSTANCE_CAPACITY",
)

INSTANCE_USED = MetricSpec(
    name="modelmesh_instance_used_bytes",
    kind=Kind.GAUGE,
    help="Amount of capacity currently in use by loaded models",
    modelmesh="INSTANCE_USED",
)

INSTANCE_USED_BASIS_POINTS = MetricSpec(
    name="modelmesh_instance_used_bps",
    kind=Kind.GAUGE,
    help="Amount of capacity used in basis points (100ths of percent)",
    modelmesh="INSTANCE_USED_BASIS_POINTS",
)

INSTANCE_MODEL_COUNT = MetricSpec(
    name="modelmesh_instance_models_total",
    kind=Kind.GAUGE,
    help="Number of model copies loaded in pod",
    modelmesh="INSTANCE_MODEL_COUNT",
)

# -- the cluster (only the leader exports them) --------------------------------

MODELS_LOADED = MetricSpec(
    name="modelmesh_models_loaded_total",
    kind=Kind.GAUGE,
    help="Total number of models with at least one loaded copy",
    modelmesh="MODELS_LOADED",
    leader_only=True,
)

TOTAL_MODELS = MetricSpec(
    name="modelmesh_models_managed_total",
    kind=Kind.GAUGE,
    help="Total number of models managed",
    modelmesh="TOTAL_MODELS",
    leader_only=True,
)

MODELS_WITH_LOAD_FAIL = MetricSpec(
    name="modelmesh_models_with_failure_total",
    kind=Kind.GAUGE,
    help="Total number of models with one or more recent load failures",
    modelmesh="MODELS_WITH_LOAD_FAIL",
    leader_only=True,
)

CATALOG: tuple[MetricSpec, ...] = (
    INVOKE_MODEL_TIME,
    API_REQUEST_TIME,
    REQUEST_PAYLOAD_SIZE,
    RESPONSE_PAYLOAD_SIZE,
    CACHE_MISS_DELAY,
    LOAD_MODEL_TIME,
    UNLOAD_MODEL_TIME,
    QUEUE_DELAY,
    LOAD_MODEL_QUEUE_DELAY,
    MODEL_SIZING_TIME,
    AGE_AT_EVICTION,
    LOADED_MODEL_SIZE,
    MODEL_PULL_TIME,
    MODEL_PULL_SIZE,
    BATCH_SIZE,
    AUTH_DENIED,
    LIMIT_REJECTED,
    PAYLOADS_DROPPED,
    LOAD_MODEL_FAILURE,
    UNLOAD_MODEL_FAILURE,
    UNLOAD_MODEL_ATTEMPT_FAILURE,
    INSTANCE_LRU_TIME,
    INSTANCE_LRU_AGE,
    INSTANCE_CAPACITY,
    INSTANCE_USED,
    INSTANCE_USED_BASIS_POINTS,
    INSTANCE_MODEL_COUNT,
    MODELS_LOADED,
    TOTAL_MODELS,
    MODELS_WITH_LOAD_FAIL,
)
"""Every metric, in exposition order."""
