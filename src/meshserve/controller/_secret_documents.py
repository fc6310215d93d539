"""A Secret as the store keeps it: sealed values in place of the clear ones.

``meshserve apply`` hands the resource store a Secret with ``data`` (base64)
and ``stringData``; it is stored with both replaced by ``sealedData``, one
sealed value per key (see ``meshserve.security`` for the sealing), so the
store, its backups and ``get -o yaml`` never hold a value:

    apiVersion: v1
    kind: Secret
    metadata: {name: storage-config, namespace: team-a}
    sealedData: {s3: "ms1:1a2b3c4d:..."}

What is shown of it (:func:`redact_secret`) is each key and its length.
"""

from __future__ import annotations

from typing import Any

from meshserve.resources import SEALED_DATA_FIELD, Secret
from meshserve.security import (
    SealContext,
    SealingKey,
    SealingKeyError,
    UnsealError,
    sealed_size,
)
from meshserve.storage import SecretEntries

__all__ = ["redact_secret", "seal_secret", "secret_origin", "unseal_secret"]

NO_KEY_HINT = (
    "set security.sealingKeyFile or MESHSERVE_SECURITY__SEALING_KEY, or give the --data-dir "
    "of the `meshserve up` that made <data dir>/sealing.key"
)


def secret_origin(namespace: str, name: str) -> str:
    """How messages name a Secret."""
    return f"secret '{namespace}/{name}'"


def seal_secret(document: dict[str, Any], *, sealing_key: SealingKey | None) -> dict[str, Any]:
    """The stored form of an applied Secret document. SealingKeyError
    without a key: a Secret is never stored in the clear."""
    secret = Secret.model_validate(document)
    if sealing_key is None:
        raise SealingKeyError(
            f"cannot apply {secret_origin(secret.namespace, secret.name)}: its values are "
            f"sealed before they are stored, and there is no sealing key ({NO_KEY_HINT})"
        )
    sealed = {
        item: sealing_key.seal(
            value, context=SealContext(namespace=secret.namespace, name=secret.name, item=item)
        )
        for item, value in sorted(secret.items().items())
    }
    stored = {k: v for k, v in document.items() if k not in ("data", "stringData", "status")}
    stored.setdefault("metadata", {})["namespace"] = secret.namespace
    stored[SEALED_DATA_FIELD] = sealed
    return stored


def redact_secret(document: dict[str, Any]) -> dict[str, Any]:
    """A stored Secret as shown: each key with its length, no value."""
    shown = {k: v for k, v in document.items() if k != SEALED_DATA_FIELD}
    shown["data"] = {
        item: _describe(token) for item, token in (document.get(SEALED_DATA_FIELD) or {}).items()
    }
    return shown


def _describe(token: object) -> str:
    try:
        return f"<sealed, {sealed_size(str(token))} bytes>"
    except UnsealError:
        return "<sealed, unreadable>"


def unseal_secret(document: dict[str, Any], *, sealing_key: SealingKey | None) -> SecretEntries:
    """A stored Secret's values in the clear. A key that cannot be unsealed
    is listed with the reason (naming the Secret and the key), not raised:
    the Secret's other keys still serve."""
    metadata = document.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "default")
    name = str(metadata.get("name", ""))
    origin = secret_origin(namespace, name)
    sealed: dict[str, Any] = document.get(SEALED_DATA_FIELD) or {}
    values: dict[str, bytes] = {}
    unreadable: dict[str, str] = {}
    for item, token in sealed.items():
        if sealing_key is None:
            unreadable[item] = (
                f"cannot unseal key '{item}' of {origin}: this process has no sealing key "
                f"({NO_KEY_HINT}; it must be the key the Secret was sealed with)"
            )
            continue
        context = SealContext(namespace=namespace, name=name, item=item)
        try:
            values[item] = sealing_key.unseal(str(token), context=context)
        except UnsealError as exc:
            unreadable[item] = f"cannot unseal key '{item}' of {origin}: {exc}"
    return SecretEntries(origin=origin, values=values, unreadable=unreadable)
