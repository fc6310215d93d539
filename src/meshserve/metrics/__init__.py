"""Prometheus metrics under KServe ModelMesh's ``modelmesh_*`` names, so that
dashboards and alerts written for ModelMesh keep working.

The mesh reports events through intent-named methods (``observe_load``,
``load_failed``, ``set_instance``...) of a :class:`MetricsRecorder`:
:class:`Metrics` turns them into Prometheus metrics in a registry of its own,
:class:`NullMetrics` ignores them.

- ``_catalog.py``: every metric declared once (name, type, help, labels,
  buckets, the ModelMesh ``Metric.java`` constant it mirrors).
- ``_recorder.py``: the events, mapped onto the catalog's metrics.
- ``_prometheus.py``: the exporter, its collectors built from the catalog.

docs/metrics.md lists what is exported and how it differs from ModelMesh.
Labels: ``method`` (the short RPC name, e.g. ``ModelInfer``) and ``code``
(the gRPC status name, ``OK`` on success) on the four request metrics. With
``per_model=True`` every histogram also gets ``modelId`` and ``vModelId``
(the vmodel the request named, else empty), as ModelMesh's
``per_model_metrics`` does (setting ``metrics.perModel``); it is off by
default because each model multiplies the number of series.
"""

from meshserve.metrics._prometheus import CONTENT_TYPE, Metrics
from meshserve.metrics._recorder import (
    MetricsRecorder,
    NullMetrics,
    SupportsRender,
    used_basis_points,
)

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "MetricsRecorder",
    "NullMetrics",
    "SupportsRender",
    "used_basis_points",
]
