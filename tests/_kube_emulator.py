"""kmock's Kubernetes API emulator, as the operator's tests use it: the
resources the operator reads and writes declared for discovery, served on a
loopback port, every request recorded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import kmock

__all__ = ["RESOURCES", "api_calls", "running_emulator"]

RESOURCES: dict[str, tuple[str, bool]] = {
    "serving.kserve.io/v1alpha1/servingruntimes": ("ServingRuntime", True),
    "serving.kserve.io/v1alpha1/clusterservingruntimes": ("ClusterServingRuntime", False),
    "serving.kserve.io/v1beta1/inferenceservices": ("InferenceService", True),
    "serving.kserve.io/v1alpha1/predictors": ("Predictor", True),
    "apps/v1/deployments": ("Deployment", True),
    "v1/services": ("Service", True),
    "v1/secrets": ("Secret", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/events": ("Event", True),
    "v1/namespaces": ("Namespace", False),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True),
    "coordination.k8s.io/v1/leases": ("Lease", True),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True),
}


@contextlib.asynccontextmanager
async def running_emulator() -> AsyncIterator[kmock.KubernetesEmulator]:
    """The emulator on 127.0.0.1 (its URL: ``str(emulator.url)``)."""
    async with kmock.KubernetesEmulator() as emulator:
        for path, (kind, namespaced) in RESOURCES.items():
            emulator.resources[path] = kmock.ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                verbs={"list", "watch", "get", "create", "patch", "update", "delete"},
                subresources={"status"} if path.startswith("serving.kserve.io") else set(),
            )
        async with kmock.Server(emulator):
            yield emulator


def api_calls(emulator: kmock.KubernetesEmulator, *, agent: str | None = None) -> list[Any]:
    """The requests the emulator served (of one user agent, if given)."""
    return [
        request
        for request in emulator
        if agent is None or request.headers.get("User-Agent", "").startswith(agent)
    ]
