"""Where each kind the operator reads or writes lives in the API."""

from __future__ import annotations

from typing import Any

from meshserve.operator._kube import Endpoint, Ref

__all__ = [
    "CLUSTER_SERVING_RUNTIMES",
    "CONFIG_MAPS",
    "DEPLOYMENTS",
    "EVENTS",
    "HPAS",
    "INFERENCE_SERVICES",
    "LEASES",
    "NAMESPACES",
    "PREDICTORS",
    "SECRETS",
    "SERVICES",
    "SERVING_RUNTIMES",
    "endpoint_of_kind",
    "ref_of",
]

KSERVE = "serving.kserve.io"
SERVING_RUNTIMES = Endpoint(KSERVE, "v1alpha1", "servingruntimes")
CLUSTER_SERVING_RUNTIMES = Endpoint(KSERVE, "v1alpha1", "clusterservingruntimes", namespaced=False)
INFERENCE_SERVICES = Endpoint(KSERVE, "v1beta1", "inferenceservices")
PREDICTORS = Endpoint(KSERVE, "v1alpha1", "predictors")
DEPLOYMENTS = Endpoint("apps", "v1", "deployments")
SERVICES = Endpoint("", "v1", "services")
SECRETS = Endpoint("", "v1", "secrets")
EVENTS = Endpoint("", "v1", "events")
SERVICE_ACCOUNTS = Endpoint("", "v1", "serviceaccounts")
CONFIG_MAPS = Endpoint("", "v1", "configmaps")
NAMESPACES = Endpoint("", "v1", "namespaces", namespaced=False)
HPAS = Endpoint("autoscaling", "v2", "horizontalpodautoscalers")
LEASES = Endpoint("coordination.k8s.io", "v1", "leases")
NETWORK_POLICIES = Endpoint("networking.k8s.io", "v1", "networkpolicies")

_BY_KIND = {
    "ServingRuntime": SERVING_RUNTIMES,
    "ClusterServingRuntime": CLUSTER_SERVING_RUNTIMES,
    "InferenceService": INFERENCE_SERVICES,
    "Predictor": PREDICTORS,
    "Deployment": DEPLOYMENTS,
    "Service": SERVICES,
    "Secret": SECRETS,
    "ServiceAccount": SERVICE_ACCOUNTS,
    "ConfigMap": CONFIG_MAPS,
    "HorizontalPodAutoscaler": HPAS,
    "Lease": LEASES,
    "NetworkPolicy": NETWORK_POLICIES,
    "Namespace": NAMESPACES,
    "Event": EVENTS,
}


def endpoint_of_kind(kind: str) -> Endpoint:
    """The endpoint of ``kind``; ValueError for a kind the operator does not use."""
    try:
        return _BY_KIND[kind]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind!r} objects") from None


def ref_of(document: dict[str, Any], *, namespace: str | None = None) -> Ref:
    """The object ``document`` describes (``namespace`` when it names none)."""
    endpoint = endpoint_of_kind(str(document.get("kind", "")))
    metadata = document.get("metadata") or {}
    where = metadata.get("namespace") or namespace if endpoint.namespaced else None
    return Ref(endpoint, where, str(metadata.get("name", "")))
