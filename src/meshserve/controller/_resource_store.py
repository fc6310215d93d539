"""Applied resources and their status, kept in the mesh's store.

``resources/<Kind>/<namespace>/<name>`` holds the document as applied;
``status/<Kind>/<namespace>/<name>`` the status the controller writes. They
are apart so that writing a status does not look like a change of spec.
Cluster-scoped kinds use the namespace ``_cluster``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from meshserve.store import Store

__all__ = ["CLUSTER", "ResourceKey", "ResourceStore", "kind_of"]

RESOURCES_PREFIX = "resources/"
STATUS_PREFIX = "status/"
CLUSTER = "_cluster"

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


class ResourceStore:
    """Reads and writes applied resources and their status."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def put(self, document: dict[str, Any]) -> ResourceKey:
        key = ResourceKey.of(document)
        await self._store.put(RESOURCES_PREFIX + key.path(), orjson.dumps(document))
        return key

    async def delete(self, key: ResourceKey) -> bool:
        deleted = await self._store.delete(RESOURCES_PREFIX + key.path())
        await self._store.delete(STATUS_PREFIX + key.path())
        return deleted

    async def get(self, key: ResourceKey) -> dict[str, Any] | None:
        kv = await self._store.get(RESOURCES_PREFIX + key.path())
        return None if kv is None else _document(kv.value)

    async def list(self, kind: str | None = None) -> dict[ResourceKey, dict[str, Any]]:
        prefix = RESOURCES_PREFIX + (f"{kind}/" if kind else "")
        result = await self._store.range(prefix)
        return {
            ResourceKey.parse(kv.key[len(RESOURCES_PREFIX) :]): _document(kv.value)
            for kv in result.kvs
        }

    async def status(self, key: ResourceKey) -> dict[str, Any] | None:
        kv = await self._store.get(STATUS_PREFIX + key.path())
        return None if kv is None else _document(kv.value)

    async def statuses(self) -> dict[ResourceKey, dict[str, Any]]:
        result = await self._store.range(STATUS_PREFIX)
        return {
            ResourceKey.parse(kv.key[len(STATUS_PREFIX) :]): _document(kv.value)
            for kv in result.kvs
        }

    async def put_status(self, key: ResourceKey, status: dict[str, Any]) -> None:
        await self._store.put(STATUS_PREFIX + key.path(), orjson.dumps(status))

    async def delete_status(self, key: ResourceKey) -> None:
        await self._store.delete(STATUS_PREFIX + key.path())


def _document(value: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(value)
    return loaded
