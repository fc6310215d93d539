"""kmock's Kubernetes API emulator, as the operator's tests use it: the
resources the operator reads and writes declared for discovery, served on a
loopback port, every request recorded.

kmock 0.8 reads ``/api/v1/namespaces/<x>/...`` as "in namespace <x>"
always, so the Namespace resource itself (``GET /api/v1/namespaces``,
``/api/v1/namespaces/<name>``) failed to parse (an HTTP 500: nothing to
unpack after ``namespaces``). The parse happens before any hook a subclass
could override (``RawHandler.__call__`` calls the module's ``parse_path``),
so while an emulator runs its path parser is wrapped (in this process, not
the installed package): those two paths become the cluster-scoped
``namespaces`` resource, everything else is parsed as kmock does.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from unittest import mock

import kmock
from kmock._internal import parsing

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


# The Namespace objects' own paths: the list, or one namespace (and its
# subresources, which name no resource of their own in a namespace).
_NAMESPACE_PATH = re.compile(
    r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?"
)


def _parse_path(path: str, *, kmocks: Any) -> Any:
    found = _NAMESPACE_PATH.fullmatch(path)
    if found is None:
        return kmocks(path)
    return parsing.ParsedPath(
        group="", version="v1", plural="namespaces", name=found["name"], subresource=found["sub"]
    )


@contextlib.contextmanager
def _namespaces_parsed() -> Iterator[None]:
    """kmock's path parser, able to name the Namespace resource (see the module docstring)."""
    kmocks = parsing.parse_path
    if getattr(kmocks, "namespaces_parsed", False):  # an emulator running already
        yield
        return

    def parse_path(path: str) -> Any:
        return _parse_path(path, kmocks=kmocks)

    parse_path.namespaces_parsed = True  # type: ignore[attr-defined]
    with mock.patch.object(parsing, "parse_path", parse_path):
        yield


@contextlib.asynccontextmanager
async def running_emulator() -> AsyncIterator[kmock.KubernetesEmulator]:
    """The emulator on 127.0.0.1 (its URL: ``str(emulator.url)``)."""
    with _namespaces_parsed():
        async with _emulator() as emulator:
            yield emulator


@contextlib.asynccontextmanager
async def _emulator() -> AsyncIterator[kmock.KubernetesEmulator]:
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
