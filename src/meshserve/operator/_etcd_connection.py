"""ModelMesh Serving's etcd connection Secret, handed to the store as a file.

The Secret ``model-serving-etcd`` holds, under ``etcd_connection``, the JSON
``open_store`` reads from ``store.etcdConnectionFile`` (the one reader of it,
``meshserve.store``; the runtime pods mount the same key as that file). The
operator writes the value to a file of mode 0600 in a directory it owns.
"""

from __future__ import annotations

import base64
import binascii
import os
import pathlib
from typing import Any

from meshserve.errors import InvalidResourceError
from meshserve.settings import StoreSettings

__all__ = ["ETCD_CONNECTION_KEY", "etcd_store_settings", "secret_value"]

ETCD_CONNECTION_KEY = "etcd_connection"


def secret_value(secret: dict[str, Any], key: str) -> str | None:
    """A Secret's ``data`` value (base64) or ``stringData`` value, decoded."""
    data = secret.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(str(data[key]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidResourceError(
                f"Secret {_name(secret)}: data.{key} is not base64 of UTF-8 text"
            ) from None
    value = (secret.get("stringData") or {}).get(key)
    return None if value is None else str(value)


def etcd_store_settings(
    secret: dict[str, Any], *, base: StoreSettings, files: pathlib.Path
) -> StoreSettings:
    """``base`` reading etcd's address, prefix, credentials and TLS from the
    Secret's connection JSON, written to ``files``; InvalidResourceError when
    the Secret has no such key (what the JSON says is checked where it is read,
    by ``open_store``, naming the key at fault, never a value)."""
    text = secret_value(secret, ETCD_CONNECTION_KEY)
    if text is None:
        raise InvalidResourceError(f"Secret {_name(secret)} has no key {ETCD_CONNECTION_KEY}")
    path = files / ETCD_CONNECTION_KEY
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    return base.model_copy(update={"etcd_connection_file": path})


def _name(secret: dict[str, Any]) -> str:
    metadata = secret.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
