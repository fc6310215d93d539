"""What the mesh reports, as intent-named events over the catalog's metrics.

:class:`MetricsRecorder` turns each event (``observe_load``,
``load_failed``, ``set_instance``...) into values of the metrics that
``_catalog.py`` declares, through four primitives (observe, count, set,
withdraw). An exporter implements only those: the Prometheus one
(``_prometheus.Metrics``) and :class:`NullMetrics`, which drops everything.
"""

from __future__ import annotations

import abc
import enum
from typing import Protocol

from meshserve.metrics import _catalog as c
from meshserve.metrics._catalog import MetricSpec

__all__ = ["MetricsRecorder", "NullMetrics", "SupportsRender", "used_basis_points"]

_BASIS_POINTS = 10_000


def used_basis_points(used_bytes: int, capacity_bytes: int) -> int:
    """``used / capacity`` in hundredths of a percent (0 when there is no
    capacity), as ``modelmesh_instance_used_bps`` reports it."""
    if capacity_bytes <= 0:
        return 0
    return int(used_bytes / capacity_bytes * _BASIS_POINTS)


def _request_labels(method: str, code: str | enum.Enum) -> tuple[str, str]:
    # ModelMesh's default (fq_names off) keeps the part after the service:
    # "inference.GRPCInferenceService/ModelInfer" -> "ModelInfer". A status
    # is labelled by name: grpc.StatusCode.OK.name == "OK", accepted as an
    # enum without importing grpc.
    return method.rpartition("/")[2], code.name if isinstance(code, enum.Enum) else code


class SupportsRender(Protocol):
    """Something whose metrics can be scraped."""

    def render(self) -> bytes:
        """The current metrics in the Prometheus text format (0.0.4)."""
        ...


class MetricsRecorder(abc.ABC):
    """What the mesh reports; :class:`~meshserve.metrics.Metrics` and
    :class:`NullMetrics` both are one. Durations are milliseconds, sizes
    bytes. ``model_id`` and ``vmodel_id`` (the vmodel a request named) are
    used only when per-model labels are on."""

    @abc.abstractmethod
    def render(self) -> bytes:
        """The current metrics in the Prometheus text format (0.0.4)."""

    # -- the primitives an exporter implements --------------------------------

    @abc.abstractmethod
    def _observe(
        self,
        spec: MetricSpec,
        amount: float,
        labels: tuple[str, ...],
        model_id: str | None,
        vmodel_id: str | None = None,
    ) -> None:
        """Add ``amount`` to a histogram's series ``labels`` (+ the model's)."""

    @abc.abstractmethod
    def _count(self, spec: MetricSpec, labels: tuple[str, ...] = ()) -> None:
        """Add one to a counter's series ``labels``."""

    @abc.abstractmethod
    def _set(self, spec: MetricSpec, value: float) -> None:
        """Set a gauge (exporting a leader-only one again if withdrawn)."""

    @abc.abstractmethod
    def _withdraw(self, spec: MetricSpec) -> None:
        """Stop exporting a leader-only gauge until it is set again."""

    # -- requests -------------------------------------------------------------

    def observe_invoke(
        self,
        ms: float,
        *,
        method: str,
        code: str | enum.Enum,
        model_id: str | None = None,
        vmodel_id: str | None = None,
    ) -> None:
        """A call into the local runtime finished."""
        labels = _request_labels(method, code)
        self._observe(c.INVOKE_MODEL_TIME, ms, labels, model_id, vmodel_id)

    def observe_api_request(
        self,
        ms: float,
        *,
        method: str,
        code: str | enum.Enum,
        model_id: str | None = None,
        vmodel_id: str | None = None,
    ) -> None:
        """An external inference request finished."""
        labels = _request_labels(method, code)
        self._observe(c.API_REQUEST_TIME, ms, labels, model_id, vmodel_id)

    def observe_request_size(
        self,
        size_bytes: int,
        *,
        method: str,
        code: str | enum.Enum,
        model_id: str | None = None,
        vmodel_id: str | None = None,
    ) -> None:
        """The payload size of an external inference request."""
        labels = _request_labels(method, code)
        self._observe(c.REQUEST_PAYLOAD_SIZE, size_bytes, labels, model_id, vmodel_id)

    def observe_response_size(
        self,
        size_bytes: int,
        *,
        method: str,
        code: str | enum.Enum,
        model_id: str | None = None,
        vmodel_id: str | None = None,
    ) -> None:
        """The payload size of its response."""
        labels = _request_labels(method, code)
        self._observe(c.RESPONSE_PAYLOAD_SIZE, size_bytes, labels, model_id, vmodel_id)

    def observe_api_call(
        self,
        ms: float,
        *,
        method: str,
        code: str | enum.Enum,
        model_id: str | None = None,
        vmodel_id: str | None = None,
        request_bytes: int = 0,
        response_bytes: int | None = None,
    ) -> None:
        """An external inference request finished: :meth:`observe_api_request`,
        and :meth:`observe_request_size` when ``request_bytes`` (non-zero) and
        :meth:`observe_response_size` when ``response_bytes`` are given, in
        one call (the request path's: the labels are made once)."""
        labels = _request_labels(method, code)
        self._observe(c.API_REQUEST_TIME, ms, labels, model_id, vmodel_id)
        if request_bytes:
            self._observe(c.REQUEST_PAYLOAD_SIZE, request_bytes, labels, model_id, vmodel_id)
        if response_bytes is not None:
            self._observe(c.RESPONSE_PAYLOAD_SIZE, response_bytes, labels, model_id, vmodel_id)

    def observe_cache_miss(self, ms: float, *, model_id: str | None = None) -> None:
        """A request waited ``ms`` for its model to be loaded."""
        self._observe(c.CACHE_MISS_DELAY, ms, (), model_id)

    def observe_req_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        """A request waited ``ms`` for a concurrency slot of its model."""
        self._observe(c.QUEUE_DELAY, ms, (), model_id)

    def observe_batch(self, size: int, *, model_id: str | None = None) -> None:
        """One call of the built-in runtime served ``size`` requests at once."""
        self._observe(c.BATCH_SIZE, size, (), model_id)

    def auth_denied(self, kind: str, method: str) -> None:
        """A call was refused: ``unauthenticated`` or ``forbidden``."""
        self._count(c.AUTH_DENIED, (kind, method))

    def limit_rejected(self, limit: str) -> None:
        """Something was refused by a limit: ``rate``, ``models_per_namespace``,
        ``namespace_bytes`` or ``inflight_bytes`` (the decode budget)."""
        self._count(c.LIMIT_REJECTED, (limit,))

    def payload_dropped(self, processor: str, reason: str) -> None:
        """A payload processor (``logger`` or ``remote``) did not take a
        payload: ``queue_full`` (dropped unseen) or ``failed``."""
        self._count(c.PAYLOADS_DROPPED, (processor, reason))

    # -- loading and unloading ------------------------------------------------

    def observe_load(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        """A model loaded in ``ms``, measuring ``size_bytes``."""
        self._observe(c.LOAD_MODEL_TIME, ms, (), model_id)
        self._observe(c.LOADED_MODEL_SIZE, size_bytes, (), model_id)

    def load_failed(self) -> None:
        """A model load failed."""
        self._count(c.LOAD_MODEL_FAILURE)

    def observe_pull(self, ms: float, *, size_bytes: int, model_id: str | None = None) -> None:
        """Pulling ``size_bytes`` of a model's artifact from storage took ``ms``."""
        self._observe(c.MODEL_PULL_TIME, ms, (), model_id)
        self._observe(c.MODEL_PULL_SIZE, size_bytes, (), model_id)

    def observe_unload(self, ms: float, *, model_id: str | None = None) -> None:
        """A model was unloaded in ``ms``."""
        self._observe(c.UNLOAD_MODEL_TIME, ms, (), model_id)

    def unload_failed(self) -> None:
        """A copy could not be unloaded (counted once per copy)."""
        self._count(c.UNLOAD_MODEL_FAILURE)

    def unload_attempt_failed(self) -> None:
        """One unload attempt failed (it may be retried)."""
        self._count(c.UNLOAD_MODEL_ATTEMPT_FAILURE)

    def observe_eviction(self, age_ms: float, *, model_id: str | None = None) -> None:
        """A copy last used ``age_ms`` ago was evicted."""
        self._observe(c.AGE_AT_EVICTION, age_ms, (), model_id)

    def observe_sizing(self, ms: float, *, model_id: str | None = None) -> None:
        """Sizing a model (predicted or measured size) took ``ms``."""
        self._observe(c.MODEL_SIZING_TIME, ms, (), model_id)

    def observe_loading_queue_delay(self, ms: float, *, model_id: str | None = None) -> None:
        """A load waited ``ms`` for a loading slot."""
        self._observe(c.LOAD_MODEL_QUEUE_DELAY, ms, (), model_id)

    # -- state ----------------------------------------------------------------

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
        self._set(c.INSTANCE_CAPACITY, capacity_bytes)
        self._set(c.INSTANCE_USED, used_bytes)
        self._set(c.INSTANCE_USED_BASIS_POINTS, used_basis_points(used_bytes, capacity_bytes))
        self._set(c.INSTANCE_MODEL_COUNT, model_copies)
        if lru_last_used_ms is None or lru_last_used_ms <= 0:
            # As ModelMesh: an empty cache's LRU time is "never" (the far
            # future, so min() over pods ignores it) and its age 0.
            self._set(c.INSTANCE_LRU_TIME, c.NO_LRU_S)
            self._set(c.INSTANCE_LRU_AGE, 0)
        else:
            self._set(c.INSTANCE_LRU_TIME, lru_last_used_ms // 1000)
            self._set(c.INSTANCE_LRU_AGE, max(0, now_ms - lru_last_used_ms) // 1000)

    def set_cluster(
        self, *, models_loaded: int, models_managed: int, models_with_failure: int
    ) -> None:
        """Cluster-wide model counts; only the leader reports them."""
        self._set(c.MODELS_LOADED, models_loaded)
        self._set(c.TOTAL_MODELS, models_managed)
        self._set(c.MODELS_WITH_LOAD_FAIL, models_with_failure)

    def clear_cluster(self) -> None:
        """Stop exporting the cluster-wide counts (leadership was lost)."""
        for spec in c.CATALOG:
            if spec.leader_only:
                self._withdraw(spec)


class NullMetrics(MetricsRecorder):
    """A :class:`MetricsRecorder` that records nothing (tests, embedding)."""

    per_model = False

    def render(self) -> bytes:
        return b""

    def _observe(
        self,
        spec: MetricSpec,
        amount: float,
        labels: tuple[str, ...],
        model_id: str | None,
        vmodel_id: str | None = None,
    ) -> None:
        pass

    def _count(self, spec: MetricSpec, labels: tuple[str, ...] = ()) -> None:
        pass

    def _set(self, spec: MetricSpec, value: float) -> None:
        pass

    def _withdraw(self, spec: MetricSpec) -> None:
        pass
