"""ModelMesh Serving's HPA for a runtime, from upstream's annotations on it:
``serving.kserve.io/autoscalerClass: hpa``, ``min-scale`` (default 1),
``max-scale`` (default min-scale), ``metrics`` (cpu or memory, default cpu)
and ``targetUtilizationPercentage`` (default 80)."""

from __future__ import annotations

from typing import Any

from meshserve.errors import InvalidResourceError
from meshserve.operator._render_pod import MANAGED_BY
from meshserve.resources import ClusterServingRuntime, ServingRuntime

__all__ = [
    "AUTOSCALER_CLASS_ANNOTATION",
    "MAX_SCALE_ANNOTATION",
    "METRICS_ANNOTATION",
    "MIN_SCALE_ANNOTATION",
    "TARGET_UTILIZATION_ANNOTATION",
    "render_hpa",
]

AnyRuntime = ServingRuntime | ClusterServingRuntime

# Upstream's names (kserve pkg/constants and modelmesh-serving pkg/constants).
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
MIN_SCALE_ANNOTATION = "serving.kserve.io/min-scale"
MAX_SCALE_ANNOTATION = "serving.kserve.io/max-scale"
METRICS_ANNOTATION = "serving.kserve.io/metrics"
TARGET_UTILIZATION_ANNOTATION = "serving.kserve.io/targetUtilizationPercentage"

_DEFAULT_CPU_UTILIZATION = 80  # KServe's DefaultCPUUtilization
_HPA_METRICS = ("cpu", "memory")


def render_hpa(runtime: AnyRuntime, *, name: str, namespace: str) -> dict[str, Any] | None:
    """ModelMesh Serving's HPA: min/max replicas and one resource metric's
    average utilization, from the runtime's annotations."""
    annotations = runtime.metadata.annotations
    if annotations.get(AUTOSCALER_CLASS_ANNOTATION) != "hpa":
        return None
    minimum = _int_annotation(annotations, MIN_SCALE_ANNOTATION, default=1, least=1)
    maximum = max(
        _int_annotation(annotations, MAX_SCALE_ANNOTATION, default=minimum, least=1), minimum
    )
    target = _int_annotation(
        annotations, TARGET_UTILIZATION_ANNOTATION, default=_DEFAULT_CPU_UTILIZATION, least=1
    )
    metric = annotations.get(METRICS_ANNOTATION, "cpu")
    if metric not in _HPA_METRICS:
        raise InvalidResourceError(
            f"{metric!r}: expected one of {', '.join(_HPA_METRICS)}",
            field=f"metadata.annotations[{METRICS_ANNOTATION}]",
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": metric,
                        "target": {"type": "Utilization", "averageUtilization": target},
                    },
                }
            ],
        },
    }


def _int_annotation(annotations: dict[str, str], key: str, *, default: int, least: int) -> int:
    text = annotations.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise InvalidResourceError(
            f"{text!r}: expected a whole number of at least {least}",
            field=f"metadata.annotations[{key}]",
        )
    return value
