"""The resource calls of the admin API (``ApplyResources``, ``GetResources``,
``DeleteResources``) without their wire types: documents in, keys out.

Who may do what is decided per document or ref, in its namespace
(``security.check_action``; a no-op when no auth layer ran):

- reading needs ``read`` in the namespace asked for; a listing of every
  namespace shows only those the caller may see;
- applying or deleting InferenceServices, Predictors and ServingRuntimes
  needs ``write`` there;
- Secrets (storage credentials) need ``admin`` in their namespace;
- ClusterServingRuntimes affect every namespace: changing one needs
  ``admin`` and a principal whose namespaces cover ``_cluster`` (``*``
  does); any reader sees them.

Every document and ref is checked before anything is written, so a call
either applies (or deletes) everything it names or nothing. A Predictor's
or InferenceService's model location is checked too: a bad storageUri, a
path escaping its root, a local path outside the roots the server allows
resources are refused (INVALID_ARGUMENT) with nothing written.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import orjson

from meshserve import security
from meshserve.controller import CLUSTER, Applied, ResourceKey, ResourceStore, kind_of
from meshserve.errors import InvalidRequestError, InvalidResourceError, PreconditionFailedError
from meshserve.resources import parse_resource

__all__ = [
    "apply_resources",
    "delete_resources",
    "get_resources",
    "resource_key",
    "watch_resources",
]

_ADMIN_KINDS = frozenset({"Secret", "ClusterServingRuntime"})

NO_SEALING_KEY = (
    "a Secret's values are sealed before they are stored, and there is no sealing key. "
    "Start the server with security.sealingKeyFile (MESHSERVE_SECURITY__SEALING_KEY_FILE) "
    "or MESHSERVE_SECURITY__SEALING_KEY (`meshserve up` makes <data dir>/sealing.key)"
)


def resource_key(kind: str, namespace: str, name: str) -> ResourceKey:
    """The key a request's ref names (a CLI alias is a kind too; "" is the
    ``default`` namespace). InvalidRequestError for an unknown kind or a
    name that is not one path segment."""
    try:
        resolved = kind_of(kind)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    if not name or "/" in name or "/" in namespace:
        raise InvalidRequestError(f"{resolved.lower()} '{namespace}/{name}': not a resource name")
    return ResourceKey.named(resolved, namespace or "default", name)


def _check_change(key: ResourceKey) -> None:
    if key.kind == "ClusterServingRuntime":
        security.check_action("admin", namespace=CLUSTER)
    else:
        action: security.Action = "admin" if key.kind in _ADMIN_KINDS else "write"
        security.check_action(action, namespace=key.namespace)


def _parse(resources: ResourceStore, text: str, *, index: int) -> dict[str, Any]:
    """One request document, validated as ``meshserve apply`` validates a
    file's, and its model location checked (:meth:`ResourceStore.admit`);
    InvalidResourceError names it by position (and kind/name when it has
    them)."""
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidResourceError(f"not valid JSON: {exc}", document=index) from None
    try:
        resource = parse_resource(document, index=index)
        resources.admit(resource)
        return resource.to_document()
    except InvalidResourceError as exc:
        metadata = document.get("metadata") if isinstance(document, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not name:
            raise
        kind = str(document.get("kind", "")).lower()
        raise InvalidResourceError(
            f"{exc.problem} ({kind}/{name})", field=exc.field, document=index
        ) from None


async def apply_resources(
    resources: ResourceStore, documents: Sequence[str]
) -> list[tuple[ResourceKey, Applied]]:
    """Create or update every document (JSON); each key with what applying
    it did. Nothing is written unless every document is valid, allowed,
    and (for a Secret) can be sealed."""
    parsed = [_parse(resources, text, index=index) for index, text in enumerate(documents)]
    keys = [ResourceKey.of(document) for document in parsed]
    for key in keys:
        _check_change(key)
    secrets = [f"secret/{key.name}" for key in keys if key.kind == "Secret"]
    if secrets and not resources.can_seal:
        raise PreconditionFailedError(f"cannot apply {', '.join(secrets)}: {NO_SEALING_KEY}")
    return [
        (key, await resources.apply(document)) for key, document in zip(keys, parsed, strict=True)
    ]


def _readable_kind(kind: str, *, namespace: str) -> str:
    """The kind a read asks for, once the caller may read ``namespace``
    ("": every namespace, filtered later)."""
    try:
        resolved = kind_of(kind)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    if namespace and resolved != "ClusterServingRuntime":
        security.check_action("read", namespace=namespace)
    return resolved


def _visible(namespace: str) -> bool:
    """Whether the caller sees resources of ``namespace`` in a listing."""
    return namespace == CLUSTER or security.may_see_namespace(namespace)


async def get_resources(
    resources: ResourceStore, *, kind: str, namespace: str, name: str
) -> list[dict[str, Any]]:
    """The ``kind`` resources as ``meshserve get`` shows them
    (:meth:`ResourceStore.shown`); ``namespace`` "" is every namespace the
    caller may see, ``name`` "" all of them."""
    resolved = _readable_kind(kind, namespace=namespace)
    return await resources.shown(
        resolved, namespace=namespace or None, name=name or None, visible=_visible
    )


async def watch_resources(
    resources: ResourceStore, *, kind: str, namespace: str, name: str
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """What :func:`get_resources` gives, now and after each change to a
    ``kind`` resource or its status, until the caller stops iterating.
    Changes that come while a listing is read are in the next one."""
    resolved = _readable_kind(kind, namespace=namespace)
    listings = resources.watch_shown(
        resolved, namespace=namespace or None, name=name or None, visible=_visible
    )
    async with contextlib.aclosing(listings):
        async for listing in listings:
            yield listing


async def delete_resources(
    resources: ResourceStore, keys: Sequence[ResourceKey]
) -> list[tuple[ResourceKey, bool]]:
    """Delete every key; each with False if there was no such resource.
    Nothing is deleted unless the caller may delete all of them."""
    for key in keys:
        _check_change(key)
    return [(key, await resources.delete(key)) for key in keys]
