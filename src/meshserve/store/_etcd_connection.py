"""ModelMesh Serving's etcd connection JSON read as store settings.

ModelMesh Serving keeps how to reach etcd in the ``etcd_connection`` key of
the ``model-serving-etcd`` Secret, a JSON object; a pod mounts it as a file
(``store.etcdConnectionFile``). An inline ``certificate`` (the CA's PEM) is
written to ``<data_dir>/etcd-ca.pem``, since the etcd client reads files.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from meshserve.settings import StoreSettings

__all__ = ["with_etcd_connection"]

_FILE_KEYS = {
    "certificate_file": "etcd_ca",
    "client_certificate_file": "etcd_cert",
    "client_key_file": "etcd_key",
}


def with_etcd_connection(settings: StoreSettings, *, data_dir: pathlib.Path) -> StoreSettings:
    """``settings`` with what ``etcd_connection_file`` says applied (unchanged
    when it is not set). Raises ValueError naming the file and the key at
    fault, never a value."""
    path = settings.etcd_connection_file
    if path is None:
        return settings
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"store.etcdConnectionFile {path}: cannot read it as JSON: {exc}"
        ) from None
    if not isinstance(document, Mapping):
        raise ValueError(f"store.etcdConnectionFile {path}: expected a JSON object")
    return settings.model_copy(update=_updates(document, path=path, data_dir=data_dir))


def _updates(
    document: Mapping[str, Any], *, path: pathlib.Path, data_dir: pathlib.Path
) -> dict[str, Any]:
    def text(key: str) -> str:
        value = document.get(key) or ""
        if not isinstance(value, str):
            raise ValueError(f"store.etcdConnectionFile {path}: {key} must be a string")
        return value

    endpoints = [e.strip() for e in text("endpoints").split(",") if e.strip()]
    if not endpoints:
        raise ValueError(f"store.etcdConnectionFile {path}: endpoints is empty")
    # etcd's URLs: http(s)://host:port; TLS is chosen by the certificate.
    hosts = [e.split("://", 1)[-1].rstrip("/") for e in endpoints]
    updates: dict[str, Any] = {"url": "etcd://" + ",".join(hosts)}
    if text("root_prefix"):
        updates["root_prefix"] = text("root_prefix")
    if text("userid"):
        updates["etcd_user"] = text("userid")
        updates["etcd_password"] = SecretStr(text("password"))
    for key, setting in _FILE_KEYS.items():
        if text(key):
            updates[setting] = text(key)
    if text("certificate") and "etcd_ca" not in updates:
        updates["etcd_ca"] = str(_write_ca(text("certificate"), data_dir=data_dir))
    return updates


def _write_ca(pem: str, *, data_dir: pathlib.Path) -> pathlib.Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / "etcd-ca.pem"
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(pem)
    return target
