"""Applied resources and their status, kept in the mesh's store.

``resources/<Kind>/<namespace>/<name>`` holds the document as applied;
``status/<Kind>/<namespace>/<name>`` the status the controller writes. They
are apart so that writing a status does not look like a change of spec.
Cluster-scoped kinds use the namespace ``_cluster``. A Secret's values are
sealed before they are written (see ``_secret_documents``); the puller reads
them back through :class:`SealedSecrets`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

import orjson

from meshserve._resource_refs import CLUSTER, Applied, ResourceKey, kind_of
from meshserve.controller._builtin_runtimes import builtin_runtimes
from meshserve.controller._secret_documents import redact_secret, seal_secret, unseal_secret
from meshserve.errors import InvalidResourceError, StorageUnavailableError
from meshserve.resources import (
    SEALED_DATA_FIELD,
    InferenceService,
    Predictor,
    Resource,
    model_location,
)
from meshserve.security import SealingKey
from meshserve.storage import LocalRoots, SecretEntries
from meshserve.store import Store, StoreError, WatchStream

__all__ = [
    "CLUSTER",
    "Applied",
    "ResourceKey",
    "ResourceSource",
    "ResourceStore",
    "SealedSecrets",
    "kind_of",
]

log = logging.getLogger(__name__)

RESOURCES_PREFIX = "resources/"
STATUS_PREFIX = "status/"

Listing = list[dict[str, Any]]
"""Resources as ``meshserve get`` shows them."""


class ResourceSource(Protocol):
    """What the controller reads resources from and writes status to:
    :class:`ResourceStore` (the mesh's store), or the operator's view of a
    Kubernetes cluster."""

    async def list(self, kind: str | None = None) -> dict[ResourceKey, dict[str, Any]]:
        """The resources, first applied first."""
        ...

    async def statuses(self, kind: str | None = None) -> dict[ResourceKey, dict[str, Any]]:
        """The status last written for each resource."""
        ...

    async def put_status(self, key: ResourceKey, status: dict[str, Any]) -> None: ...

    async def delete_status(self, key: ResourceKey) -> None: ...

    def admit(self, resource: Resource) -> None:
        """InvalidResourceError if the resource's model location is known bad."""
        ...


class ResourceStore:
    """Reads and writes applied resources and their status."""

    def __init__(
        self,
        store: Store,
        *,
        sealing_key: SealingKey | None = None,
        local_roots: LocalRoots | None = None,
    ) -> None:
        """``sealing_key`` seals the Secrets ``put`` writes; without one,
        putting a Secret raises SealingKeyError. ``local_roots``: where the
        local paths of the resources :meth:`admit` passes may lie (None:
        not checked here)."""
        self._store = store
        self._sealing_key = sealing_key
        self._local_roots = local_roots

    @property
    def can_seal(self) -> bool:
        """Whether Secrets may be written: there is a key to seal them with."""
        return self._sealing_key is not None

    async def apply(self, document: dict[str, Any]) -> Applied:
        """Create or update a resource as ``kubectl apply`` does. An update
        keeps the uid and creationTimestamp, and bumps ``metadata.generation``
        only when the spec changed (the controller reports the generation it
        reconciled); a document the same as the one stored is not written
        again (UNCHANGED; a Secret, stored sealed, is always CONFIGURED).
        ``document`` is left as it is."""
        key = ResourceKey.of(document)
        existing = await self.get(key)
        metadata = dict(document.get("metadata") or {})
        if existing is not None:
            if _as_applied(existing) == _as_applied(document):
                return Applied.UNCHANGED
            previous = existing.get("metadata") or {}
            changed = existing.get("spec") != document.get("spec")
            metadata["generation"] = previous.get("generation", 1) + int(changed)
            metadata["uid"] = previous.get("uid") or str(uuid.uuid4())
            metadata["creationTimestamp"] = previous.get("creationTimestamp") or _now()
        else:
            metadata.update(generation=1, uid=str(uuid.uuid4()), creationTimestamp=_now())
        await self.put({**document, "metadata": metadata})
        return Applied.CREATED if existing is None else Applied.CONFIGURED

    def admit(self, resource: Resource) -> None:
        """Refuse (InvalidResourceError naming the field) a Predictor or
        InferenceService whose model location is known bad before anything
        runs: a bad storageUri, a path escaping its root with ``..``, a local
        path outside the roots this store was given. Other kinds pass."""
        if not isinstance(resource, Predictor | InferenceService):
            return
        location = model_location(resource)
        if location is None or not location.local or self._local_roots is None:
            return
        refusal = self._local_roots.refusal(location.path, namespace=resource.namespace)
        if refusal is not None:
            raise InvalidResourceError(refusal, field=location.field)

    async def shown(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        visible: Callable[[str], bool] = lambda namespace: True,
    ) -> list[dict[str, Any]]:
        """The ``kind`` resources as ``meshserve get`` shows them, in key
        order: each with the controller's status as ``status``, a Secret's
        values left out (:func:`redact_secret`), and the
        ClusterServingRuntimes meshserve ships beside the applied ones.

        ``namespace`` None is every namespace; cluster-scoped resources are
        in every namespace's listing. ``visible`` drops the namespaces a
        caller may not see."""
        documents = await self.list(kind)
        statuses = await self.statuses(kind)
        if kind == "ClusterServingRuntime":
            for shipped in builtin_runtimes():
                documents.setdefault(
                    ResourceKey.named(kind, CLUSTER, shipped.name), shipped.to_document()
                )
        found = []
        # Sorted on plain tuples: the dataclass's own comparisons, called
        # n log n times, are most of the time at 100,000 resources.
        for key, document in sorted(documents.items(), key=_key_order):
            if namespace is not None and key.namespace not in (namespace, CLUSTER):
                continue
            if (name is not None and key.name != name) or not visible(key.namespace):
                continue
            if kind == "Secret":
                document = redact_secret(document)
            status = statuses.get(key)
            found.append(document if status is None else {**document, "status": status})
        return found

    async def put(self, document: dict[str, Any]) -> ResourceKey:
        """Write an applied document (a Secret's values sealed first)."""
        key = ResourceKey.of(document)
        if key.kind == "Secret":
            document = seal_secret(document, sealing_key=self._sealing_key)
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
        """The applied resources (of ``kind`` only, if given), in the order
        they were first applied (the store's create revision: the
        controller's first come, first served)."""
        prefix = RESOURCES_PREFIX + (f"{kind}/" if kind else "")
        result = await self._store.range(prefix)
        return {
            ResourceKey.parse(kv.key[len(RESOURCES_PREFIX) :]): _document(kv.value)
            for kv in sorted(result.kvs, key=lambda kv: kv.create_revision)
        }

    async def status(self, key: ResourceKey) -> dict[str, Any] | None:
        kv = await self._store.get(STATUS_PREFIX + key.path())
        return None if kv is None else _document(kv.value)

    async def statuses(self, kind: str | None = None) -> dict[ResourceKey, dict[str, Any]]:
        """Every status the controller wrote (of ``kind`` only, if given)."""
        result = await self._store.range(STATUS_PREFIX + (f"{kind}/" if kind else ""))
        return {
            ResourceKey.parse(kv.key[len(STATUS_PREFIX) :]): _document(kv.value)
            for kv in result.kvs
        }

    async def put_status(self, key: ResourceKey, status: dict[str, Any]) -> None:
        await self._store.put(STATUS_PREFIX + key.path(), orjson.dumps(status))

    async def delete_status(self, key: ResourceKey) -> None:
        await self._store.delete(STATUS_PREFIX + key.path())

    async def watch_shown(
        self,
        kind: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        visible: Callable[[str], bool] = lambda namespace: True,
    ) -> AsyncGenerator[Listing, None]:
        """What :meth:`shown` gives, now and after each change to a ``kind``
        resource or its status, until the caller stops iterating. Changes
        that come while a listing is read are in the next one."""
        async with self._changes(kind) as changed:
            while True:
                changed.clear()
                yield await self.shown(kind, namespace=namespace, name=name, visible=visible)
                await changed.wait()

    @contextlib.asynccontextmanager
    async def _changes(self, kind: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever a ``kind`` resource or its status changes
        (the caller clears it), for as long as the block runs. The watches
        are open when the block starts: a change made after it is seen."""
        changed = asyncio.Event()

        async def follow(events: WatchStream) -> None:
            async for _ in events:
                changed.set()

        async with contextlib.AsyncExitStack() as watches:
            streams = [
                await watches.enter_async_context(self._store.watch(f"{prefix}{kind}/"))
                for prefix in (RESOURCES_PREFIX, STATUS_PREFIX)
            ]
            followers = [asyncio.create_task(follow(stream)) for stream in streams]
            try:
                yield changed
            finally:
                for task in followers:
                    task.cancel()
                await asyncio.gather(*followers, return_exceptions=True)


# Set by the store on every write: not part of what was applied.
_SERVER_METADATA = ("generation", "uid", "creationTimestamp")


def _key_order(item: tuple[ResourceKey, Any]) -> tuple[str, str, str]:
    key = item[0]
    return key.kind, key.namespace, key.name


def _as_applied(document: dict[str, Any]) -> dict[str, Any]:
    metadata = document.get("metadata") or {}
    kept = {k: v for k, v in metadata.items() if k not in _SERVER_METADATA}
    return {**document, "metadata": kept}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _document(value: bytes) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(value)
    return loaded


class SealedSecrets:
    """The Secrets in the store, unsealed when asked: the puller's
    ``SecretReader``. Nothing is cached, so a re-applied Secret is what the
    next pull reads; the clear values go back to the caller only."""

    def __init__(self, resources: ResourceStore, *, sealing_key: SealingKey | None) -> None:
        self._resources = resources
        self._sealing_key = sealing_key
        self._seen: dict[ResourceKey, bytes] = {}

    async def read_secret(self, *, namespace: str, name: str) -> SecretEntries | None:
        key = ResourceKey.named("Secret", namespace, name)
        try:
            document = await self._resources.get(key)
        except StoreError as exc:
            raise StorageUnavailableError(
                f"cannot read secret '{namespace}/{name}' from the store: {exc}"
            ) from None
        if document is None:
            self._seen.pop(key, None)
            return None
        entries = unseal_secret(document, sealing_key=self._sealing_key)
        self._log_change(key, document, entries)
        return entries

    def _log_change(
        self, key: ResourceKey, document: dict[str, Any], entries: SecretEntries
    ) -> None:
        """Say once per version of a Secret which keys it has (and which
        cannot be unsealed); names keys only."""
        sealed = document.get(SEALED_DATA_FIELD) or {}
        version = hashlib.sha256(orjson.dumps(sealed, option=orjson.OPT_SORT_KEYS)).digest()
        if self._seen.get(key) == version:
            return
        self._seen[key] = version
        log.info("storage config read from %s: keys %s", entries.origin, sorted(sealed))
        for reason in entries.unreadable.values():
            log.warning("%s", reason)
