"""The kopf handlers: every watched object goes into the operator's view.

Event handlers only (no kopf state is written to the objects: no
annotations, no kopf finalizers, no posted Events), in every replica: the
active one acts on the view (:mod:`._operator`), a standby keeps it warm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf

from meshserve.controller import CLUSTER, ResourceKey
from meshserve.operator._endpoints import (
    CLUSTER_SERVING_RUNTIMES,
    CONFIG_MAPS,
    INFERENCE_SERVICES,
    NAMESPACES,
    PREDICTORS,
    SECRETS,
    SERVING_RUNTIMES,
)
from meshserve.operator._kube import Endpoint

__all__ = ["CONFIG_MAP_NAME", "ENABLED_LABEL", "Inputs", "build_registry", "serves"]

log = logging.getLogger(__name__)

CONFIG_MAP_NAME = "model-serving-config"
ENABLED_LABEL = "modelmesh-enabled"
"""Cluster-scoped, only namespaces labelled ``modelmesh-enabled: "true"`` are served."""


@dataclass(slots=True)
class Inputs:
    """What the watches saw, besides the served resources: the config map's
    ``config.yaml``, the Secrets the operator reads (by name), and the
    namespaces enabled (cluster-scoped mode)."""

    config_yaml: str | None = None
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    enabled_namespaces: set[str] = field(default_factory=set)


def build_registry(
    *,
    namespace: str,
    clusterwide: bool,
    inputs: Inputs,
    seen: Callable[[dict[str, Any]], object],
    gone: Callable[[ResourceKey], object],
    secret_names: Callable[[], set[str]],
    changed: Callable[[], None],
) -> kopf.OperatorRegistry:
    """The handlers feeding ``seen`` / ``gone`` (served resources) and
    ``inputs``; ``changed`` wakes the operator after each event."""
    registry = kopf.OperatorRegistry()

    def watch(endpoint: Endpoint, handler: Callable[[str | None, dict[str, Any]], None]) -> None:
        def on_event(event: kopf.RawEvent, **_: Any) -> None:
            document = event.get("object")
            if isinstance(document, dict):
                handler(event.get("type"), dict(document))
                changed()

        kopf.on.event(endpoint.group, endpoint.version, endpoint.plural, registry=registry)(
            on_event
        )

    def served(kind: str) -> Callable[[str | None, dict[str, Any]], None]:
        def handle(event_type: str | None, document: dict[str, Any]) -> None:
            document = {"kind": kind, **document}
            if event_type == "DELETED":
                gone(ResourceKey.of(document))
            else:
                seen(document)

        return handle

    def config_map(event_type: str | None, document: dict[str, Any]) -> None:
        if _name(document) != CONFIG_MAP_NAME or _namespace(document) != namespace:
            return
        data = document.get("data") or {}
        inputs.config_yaml = None if event_type == "DELETED" else data.get("config.yaml")

    def secret(event_type: str | None, document: dict[str, Any]) -> None:
        name = _name(document)
        if name not in secret_names() or _namespace(document) != namespace:
            return
        if event_type == "DELETED":
            inputs.secrets.pop(name, None)
        else:
            inputs.secrets[name] = document

    def namespace_seen(event_type: str | None, document: dict[str, Any]) -> None:
        labels = (document.get("metadata") or {}).get("labels") or {}
        enabled = event_type != "DELETED" and str(labels.get(ENABLED_LABEL)) == "true"
        (inputs.enabled_namespaces.add if enabled else inputs.enabled_namespaces.discard)(
            _name(document)
        )

    watch(SERVING_RUNTIMES, served("ServingRuntime"))
    watch(INFERENCE_SERVICES, served("InferenceService"))
    watch(PREDICTORS, served("Predictor"))
    watch(CONFIG_MAPS, config_map)
    watch(SECRETS, secret)
    if clusterwide:
        # Cluster-scoped kinds need a ClusterRole: cluster scope only (as
        # upstream, whose namespace-scoped install has no ClusterServingRuntimes).
        watch(CLUSTER_SERVING_RUNTIMES, served("ClusterServingRuntime"))
        watch(NAMESPACES, namespace_seen)
    return registry


def serves(key: ResourceKey, *, namespace: str, clusterwide: bool, inputs: Inputs) -> bool:
    """Whether the operator serves ``key``'s namespace: namespace-scoped,
    its own only; cluster-scoped, also those labelled enabled (as upstream)."""
    if key.namespace in (CLUSTER, namespace):
        return True
    return clusterwide and key.namespace in inputs.enabled_namespaces


def _name(document: dict[str, Any]) -> str:
    return str((document.get("metadata") or {}).get("name", ""))


def _namespace(document: dict[str, Any]) -> str:
    return str((document.get("metadata") or {}).get("namespace", ""))
