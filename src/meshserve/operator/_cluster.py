"""The cluster's resources as the controller reads them.

kopf's watches feed :class:`ClusterResources` (every replica keeps it
current, so a standby that takes over starts warm); the controller reads
it as it reads the store (:class:`meshserve.controller.ResourceSource`) and
writes each status back to the object's status subresource. An
InferenceService counts only with ``serving.kserve.io/deploymentMode:
ModelMesh`` (the others are KServe's own); one being deleted (a
``deletionTimestamp``, held by the operator's finalizer) is left out, so the
controller removes its vmodel, and is handed to whoever releases it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from meshserve.controller import ResourceKey
from meshserve.operator._endpoints import endpoint_of_kind
from meshserve.operator._events import failure_of, post_failure_event
from meshserve.operator._kube import KubeApi, Ref
from meshserve.resources import Resource

__all__ = [
    "DEPLOYMENT_MODE_ANNOTATION",
    "FINALIZER",
    "SERVED_KINDS",
    "ClusterResources",
    "merge_patch",
]

DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
FINALIZER = "serving.kserve.io/meshserve-operator"
"""Held on each served resource until its vmodel is gone from the mesh."""
SERVED_KINDS = ("InferenceService", "Predictor")
_WATCHED = frozenset({*SERVED_KINDS, "ServingRuntime", "ClusterServingRuntime"})


def _is_ours(document: dict[str, Any]) -> bool:
    if document.get("kind") != "InferenceService":
        return True
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DEPLOYMENT_MODE_ANNOTATION, "")).lower() == "modelmesh"


def _deleting(document: dict[str, Any]) -> bool:
    return bool((document.get("metadata") or {}).get("deletionTimestamp"))


class ClusterResources:
    """The watched resources, in the order first seen; see the module docstring."""

    def __init__(
        self,
        api: KubeApi,
        *,
        admit: Callable[[Resource], None],
        serves: Callable[[ResourceKey], bool] = lambda key: True,
        events_namespace: str = "default",
    ) -> None:
        """``admit``: the check of a resource's model location
        (:meth:`meshserve.controller.ResourceStore.admit`); ``serves``:
        whether a resource's namespace is served now (the others are kept,
        and count once their namespace is enabled); ``events_namespace``:
        where Events about cluster-scoped resources go."""
        self._api = api
        self._events_namespace = events_namespace
        self._admit = admit
        self._serves = serves
        self._documents: dict[ResourceKey, dict[str, Any]] = {}
        self._order: dict[ResourceKey, int] = {}
        self._counter = itertools.count()

    def seen(self, document: dict[str, Any]) -> ResourceKey | None:
        """A watch event's object, as it is now (None: not one of ours)."""
        if document.get("kind") not in _WATCHED:
            return None
        key = ResourceKey.of(document)
        if not _is_ours(document):
            self.gone(key)
            return None
        self._documents[key] = document
        if key not in self._order:
            # First come, first served, as the store's create revision (the
            # watch's order: creationTimestamp has only seconds).
            self._order[key] = next(self._counter)
        return key

    def gone(self, key: ResourceKey) -> None:
        self._documents.pop(key, None)
        self._order.pop(key, None)

    def deleting(self) -> dict[ResourceKey, dict[str, Any]]:
        """The served resources being deleted that still hold our finalizer."""
        return {
            key: doc
            for key, doc in self._served().items()
            if _deleting(doc) and FINALIZER in _finalizers(doc)
        }

    def held_unserved(self) -> dict[ResourceKey, dict[str, Any]]:
        """The resources holding our finalizer in a namespace no longer
        served (unlabelled, cluster-scoped): the operator lets go of them
        (their vmodels out of the mesh, the finalizer off), or deleting one
        would wait on an operator that no longer watches it."""
        return {
            key: doc
            for key, doc in self._documents.items()
            if not self._serves(key) and key.kind in SERVED_KINDS and FINALIZER in _finalizers(doc)
        }

    def runtime_namespaces(self) -> set[str]:
        """The namespaces of every ServingRuntime seen, served or not: where
        a runtime Deployment may be (one left in a namespace unlabelled,
        even while the operator was down, is pruned from there)."""
        return {key.namespace for key in self._documents if key.kind == "ServingRuntime"}

    def _served(self) -> dict[ResourceKey, dict[str, Any]]:
        return {key: doc for key, doc in self._documents.items() if self._serves(key)}

    def without_finalizer(self) -> dict[ResourceKey, dict[str, Any]]:
        """The served resources not being deleted that lack our finalizer."""
        return {
            key: doc
            for key, doc in self._served().items()
            if key.kind in SERVED_KINDS and not _deleting(doc) and FINALIZER not in _finalizers(doc)
        }

    def runtime_document(self, name: str, *, namespace: str | None) -> dict[str, Any] | None:
        """The applied ServingRuntime ``name`` (in ``namespace``, or any
        when None), else the ClusterServingRuntime of that name."""
        for key, doc in sorted(self._served().items()):
            wanted = namespace is None or key.namespace == namespace
            if key.kind == "ServingRuntime" and key.name == name and wanted:
                return doc
        for key, doc in self._documents.items():
            if key.kind == "ClusterServingRuntime" and key.name == name:
                return doc
        return None

    # The controller's ResourceSource.

    async def list(self, kind: str | None = None) -> dict[ResourceKey, dict[str, Any]]:
        keys = sorted(self._served(), key=lambda key: self._order[key])
        return {
            key: _without_status(self._documents[key])
            for key in keys
            if (kind is None or key.kind == kind) and not _deleting(self._documents[key])
        }

    async def statuses(self, kind: str | None = None) -> dict[ResourceKey, dict[str, Any]]:
        return {
            key: doc["status"]
            for key, doc in self._served().items()
            if (kind is None or key.kind == kind) and isinstance(doc.get("status"), dict)
        }

    async def put_status(self, key: ResourceKey, status: dict[str, Any]) -> None:
        document = self._documents.get(key)
        if document is None:
            return
        previous = document.get("status") if isinstance(document.get("status"), dict) else {}
        await self._api.patch(_ref(key), {"status": merge_patch(previous, status)}, status=True)
        self._update(key, status=status)
        failure = failure_of(key.kind, status)
        if failure is not None and failure != failure_of(key.kind, previous):
            await post_failure_event(
                self._api, key, document, failure=failure, namespace=self._events_namespace
            )

    async def delete_status(self, key: ResourceKey) -> None:
        """Nothing to do: a status goes with its object."""

    def admit(self, resource: Resource) -> None:
        self._admit(resource)

    async def add_finalizer(self, key: ResourceKey) -> None:
        document = self._documents[key]
        await self._set_finalizers(key, document, [*_finalizers(document), FINALIZER])

    async def _set_finalizers(
        self, key: ResourceKey, document: dict[str, Any], finalizers: Sequence[str]
    ) -> None:
        await self._api.patch(_ref(key), {"metadata": {"finalizers": finalizers}})
        self._update(key, metadata={**(document.get("metadata") or {}), "finalizers": finalizers})

    def _update(self, key: ResourceKey, **fields: Any) -> None:
        """What this replica wrote, before its watch says so (unless the
        object went meanwhile: then it stays gone)."""
        document = self._documents.get(key)
        if document is not None:
            self._documents[key] = {**document, **fields}

    async def remove_finalizer(self, key: ResourceKey, *, deleting: bool = True) -> None:
        """Our finalizer off ``key``; ``deleting``: the object goes with it
        (else it stays in the view, to be served again once its namespace is)."""
        document = self._documents.get(key)
        if document is None:
            return
        await self._set_finalizers(
            key, document, [f for f in _finalizers(document) if f != FINALIZER]
        )
        if deleting:
            self.gone(key)


def _ref(key: ResourceKey) -> Ref:
    endpoint = endpoint_of_kind(key.kind)
    return Ref(endpoint, key.namespace if endpoint.namespaced else None, key.name)


def _finalizers(document: dict[str, Any]) -> list[str]:
    return [str(f) for f in (document.get("metadata") or {}).get("finalizers") or []]


def _without_status(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "status"}


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: a
    key ``new`` lacks becomes null, so a cleared field goes."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
