"""ModelMesh Serving's etcd connection Secret as meshserve store settings.

The Secret ``model-serving-etcd`` holds, under ``etcd_connection``, the JSON
of etcd-java's schema: ``endpoints`` (comma-separated, ``http(s)://`` optional),
``root_prefix``, ``userid`` / ``password``, ``certificate`` (the PEM of the CA
that signed etcd's certificate, inline) or ``certificate_file``,
``client_certificate`` / ``client_key`` (mutual TLS, inline PEM) and
``override_authority``. Inline PEMs are written to files of mode 0600 in a
directory the caller owns. Errors name the field, never a value.
"""

from __future__ import annotations

import base64
import binascii
import os
import pathlib
from typing import Any

import orjson
from pydantic import SecretStr

from meshserve.errors import InvalidResourceError
from meshserve.settings import StoreSettings

__all__ = ["ETCD_CONNECTION_KEY", "ETCD_SECRET_NAME", "etcd_store_settings", "secret_value"]

ETCD_SECRET_NAME = "model-serving-etcd"
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
    """``base`` with etcd's address, prefix, credentials and TLS from the
    Secret; inline PEMs go to ``files``. InvalidResourceError naming the
    field when the connection JSON is missing or wrong."""
    text = secret_value(secret, ETCD_CONNECTION_KEY)
    if text is None:
        raise InvalidResourceError(f"Secret {_name(secret)} has no key {ETCD_CONNECTION_KEY}")
    try:
        connection = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidResourceError(
            f"Secret {_name(secret)}: {ETCD_CONNECTION_KEY} is not JSON"
        ) from None
    if not isinstance(connection, dict):
        raise InvalidResourceError(
            f"Secret {_name(secret)}: {ETCD_CONNECTION_KEY} is not an object"
        )
    endpoints = [
        part.strip().removeprefix("http://").removeprefix("https://").rstrip("/")
        for part in str(connection.get("endpoints") or "").split(",")
        if part.strip()
    ]
    if not endpoints:
        raise InvalidResourceError(
            f"Secret {_name(secret)}: {ETCD_CONNECTION_KEY}.endpoints names no etcd endpoint"
        )
    user = connection.get("userid") or ""
    password = connection.get("password") or ""
    if bool(user) != bool(password):
        raise InvalidResourceError(
            f"Secret {_name(secret)}: {ETCD_CONNECTION_KEY}.userid and .password go together"
        )
    updates: dict[str, Any] = {
        "url": "etcd://" + ",".join(endpoints),
        "root_prefix": str(connection.get("root_prefix") or base.root_prefix),
        "etcd_user": str(user),
        "etcd_password": SecretStr(str(password)),
    }
    ca = _pem_file(connection, "certificate", files, "etcd-ca.pem")
    ca = ca or str(connection.get("certificate_file") or "")
    if ca:
        updates["etcd_ca"] = ca
    cert = _pem_file(connection, "client_certificate", files, "etcd-client.pem")
    key = _pem_file(connection, "client_key", files, "etcd-client-key.pem")
    if bool(cert) != bool(key):
        raise InvalidResourceError(
            f"Secret {_name(secret)}: {ETCD_CONNECTION_KEY}.client_certificate and "
            ".client_key go together"
        )
    if cert:
        updates |= {"etcd_cert": cert, "etcd_key": key}
    return base.model_copy(update=updates)


def _pem_file(connection: dict[str, Any], field: str, files: pathlib.Path, name: str) -> str:
    pem = connection.get(field)
    if not pem:
        return ""
    path = files / name
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(str(pem))
    return str(path)


def _name(secret: dict[str, Any]) -> str:
    metadata = secret.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
