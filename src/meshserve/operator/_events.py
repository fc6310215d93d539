"""Kubernetes Events for what went wrong with a resource, as ``kubectl
describe`` shows them: one Warning each time a resource's failure (its
status's ``lastFailureInfo``, or a runtime's refusal) changes, not every pass."""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

from meshserve.controller import CLUSTER, ResourceKey
from meshserve.operator._endpoints import EVENTS, endpoint_of_kind
from meshserve.operator._kube import ApiError, KubeApi, Ref

__all__ = ["failure_of", "post_failure_event"]

log = logging.getLogger(__name__)

_MAX_MESSAGE = 1024


def failure_of(kind: str, status: dict[str, Any] | None) -> tuple[str, str] | None:
    """The (reason, message) a status reports as its failure, if any."""
    status = status or {}
    if kind in ("ServingRuntime", "ClusterServingRuntime"):
        message = str(status.get("message") or "")
        return ("RuntimeRefused", message) if message else None
    source = status.get("modelStatus") if kind == "InferenceService" else status
    failure = (source or {}).get("lastFailureInfo") if isinstance(source, dict) else None
    if not isinstance(failure, dict):
        return None
    return str(failure.get("reason") or "Failed"), str(failure.get("message") or "")


async def post_failure_event(
    api: KubeApi,
    key: ResourceKey,
    document: dict[str, Any],
    *,
    failure: tuple[str, str],
    namespace: str,
) -> None:
    """Post a Warning Event about ``document``'s ``failure`` (a failure to post is logged)."""
    reason, message = failure
    metadata = document.get("metadata") or {}
    where = namespace if key.namespace == CLUSTER else key.namespace
    endpoint = endpoint_of_kind(key.kind)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = f"{key.name}.{uuid.uuid4().hex[:16]}"
    involved = {
        "apiVersion": f"{endpoint.group}/{endpoint.version}",
        "kind": key.kind,
        "name": key.name,
        "uid": metadata.get("uid", ""),
    }
    if key.namespace != CLUSTER:
        involved["namespace"] = key.namespace
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": where},
        "involvedObject": involved,
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "type": "Warning",
        "source": {"component": "meshserve-operator"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        await api.create(Ref(EVENTS, where, name), event)
    except ApiError as exc:
        log.info("could not post an Event about %s: %s", key.path(), exc)
