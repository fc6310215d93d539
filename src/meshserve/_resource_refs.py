"""How a resource is named (its kind, CLI aliases, key), what applying one
did, and a condition in its status: what the resource commands of the CLI
need from the controller, without importing it (and the store, the
resource schemas and pydantic behind it). ``controller`` re-exports these."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CLUSTER", "READY", "Applied", "ResourceKey", "find_condition", "kind_of"]

CLUSTER = "_cluster"
"""The namespace of cluster-scoped kinds' keys."""

READY = "Ready"
"""The condition that sums up an InferenceService's (ModelMesh Serving's)."""

_ALIASES = {
    "inferenceservice": "InferenceService",
    "inferenceservices": "InferenceService",
    "isvc": "InferenceService",
    "predictor": "Predictor",
    "predictors": "Predictor",
    "servingruntime": "ServingRuntime",
    "servingruntimes": "ServingRuntime",
    "clusterservingruntime": "ClusterServingRuntime",
    "clusterservingruntimes": "ClusterServingRuntime",
    "secret": "Secret",
    "secrets": "Secret",
}


def kind_of(name: str) -> str:
    """The kind a CLI name means (``isvc`` -> InferenceService); ValueError if none."""
    kind = _ALIASES.get(name.lower())
    if kind is None:
        raise ValueError(f"unknown kind {name!r}; expected one of {', '.join(sorted(_ALIASES))}")
    return kind


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    kind: str
    namespace: str
    name: str

    @classmethod
    def named(cls, kind: str, namespace: str, name: str) -> ResourceKey:
        """The key of ``kind``/``name``; cluster-scoped kinds ignore ``namespace``."""
        return cls(kind, CLUSTER if kind == "ClusterServingRuntime" else namespace, name)

    @classmethod
    def of(cls, document: dict[str, Any]) -> ResourceKey:
        metadata = document.get("metadata") or {}
        return cls.named(
            str(document.get("kind", "")),
            str(metadata.get("namespace") or "default"),
            str(metadata.get("name", "")),
        )

    def path(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, path: str) -> ResourceKey:
        kind, namespace, name = path.split("/", 2)
        return cls(kind, namespace, name)


class Applied(enum.Enum):
    """What applying a document did (``kubectl apply``'s words)."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


def find_condition(status: Mapping[str, Any], condition_type: str) -> Mapping[str, Any] | None:
    """The condition of ``condition_type`` in a status document (None: it
    has none), as ``kubectl wait --for=condition=...`` finds it."""
    conditions = status.get("conditions")
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, Mapping) and condition.get("type") == condition_type:
            return condition
    return None
