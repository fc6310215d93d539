"""Rendered objects applied as ``kubectl apply`` does, with merge patches.

Each object the operator writes carries the JSON it was last rendered as
(``meshserve.io/last-applied``): an unchanged render writes nothing, and a
changed one is the merge patch from that JSON to the new one, so a field
the new render drops goes, and fields others set (an HPA's replica count,
the Deployment's status) stay. Each also carries the ``managed-by`` label,
by which the objects no longer rendered are found and deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from meshserve.operator._cluster import merge_patch
from meshserve.operator._endpoints import ref_of
from meshserve.operator._kube import Endpoint, KubeApi, Ref

__all__ = ["LAST_APPLIED", "MANAGED_BY_LABEL", "MANAGED_BY_VALUE", "ObjectWriter"]

LAST_APPLIED = "meshserve.io/last-applied"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "meshserve-operator"


def _marked(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the managed-by label."""
    metadata = dict(document.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    return {**document, "metadata": metadata}


def _with_last_applied(document: dict[str, Any], text: str) -> dict[str, Any]:
    metadata = dict(document.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), LAST_APPLIED: text}
    return {**document, "metadata": metadata}


class ObjectWriter:
    """Creates, patches and prunes the operator's objects."""

    def __init__(self, api: KubeApi, *, namespace: str) -> None:
        """``namespace``: where an object that names none goes."""
        self._api = api
        self._namespace = namespace

    async def apply(self, document: dict[str, Any]) -> bool:
        """Create or update the object as rendered; whether anything was written."""
        wanted = _marked(document)
        text = json.dumps(wanted, sort_keys=True, separators=(",", ":"))
        ref = ref_of(wanted, namespace=self._namespace)
        existing = await self._api.get(ref)
        if existing is None:
            created = await self._api.create(ref, _with_last_applied(wanted, text))
            if created is not None:
                return True
            existing = await self._api.get(ref)  # created meanwhile
            if existing is None:
                return False
        annotations = (existing.get("metadata") or {}).get("annotations") or {}
        before_text = annotations.get(LAST_APPLIED)
        if before_text == text:
            return False
        before = json.loads(before_text) if isinstance(before_text, str) else {}
        patch = merge_patch(before, wanted)
        patch.setdefault("metadata", {})
        patch["metadata"] = {
            **patch["metadata"],
            "annotations": {**(patch["metadata"].get("annotations") or {}), LAST_APPLIED: text},
        }
        await self._api.patch(ref, patch)
        return True

    async def prune(
        self, endpoint: Endpoint, *, keep: Iterable[tuple[str, str]], namespaces: Iterable[str]
    ) -> list[str]:
        """Delete the managed ``endpoint`` objects of ``namespaces`` not in
        ``keep`` (``(namespace, name)`` pairs); the ``namespace/name`` of each deleted."""
        kept = set(keep)
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        deleted = []
        for namespace in sorted(set(namespaces)):
            for item in await self._api.list(endpoint, namespace=namespace, labels=selector):
                metadata = item.get("metadata") or {}
                name = str(metadata.get("name", ""))
                labels = metadata.get("labels") or {}
                if (namespace, name) in kept or labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
                    continue
                await self._api.delete(Ref(endpoint, namespace, name))
                deleted.append(f"{namespace}/{name}")
        return deleted
