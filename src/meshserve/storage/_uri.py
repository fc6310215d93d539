"""Storage URIs (an InferenceService's ``storageUri``) -> storage parameters + path.

Mirrors ModelMesh Serving's controller: ``s3://bucket/path`` and
``gs://bucket/path`` set ``bucket``; ``pvc://name/path`` sets ``name``;
``https://<account>.blob.core.windows.net/<container>/path`` sets
``account_name`` and ``container``; any other http(s) URL is the ``url`` of
an http store with an empty path.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field

from meshserve.errors import StorageConfigError
from meshserve.storage._providers import StorageType

__all__ = ["AZURE_BLOB_HOST_SUFFIX", "StorageRef", "is_storage_uri", "parse_storage_uri"]

AZURE_BLOB_HOST_SUFFIX = ".blob.core.windows.net"

_SCHEMES = frozenset({"s3", "gs", "pvc", "http", "https"})

# Query parameters of pre-signed and token-bearing URLs (S3, GCS, Azure SAS,
# common APIs): such a URL is a credential and must not enter the model key.
_SIGNED_QUERY_PARAMS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "token",
        "access_token",
        "api_key",
        "apikey",
    }
)


@dataclass(frozen=True, slots=True)
class StorageRef:
    """Where a model lives, as the model key and path carry it."""

    type: StorageType
    path: str
    """The model's path inside the store ('' for an http URL: the URL is the file)."""
    params: dict[str, str] = field(default_factory=dict)
    """``storage_params`` for the model key; always holds ``type``."""


def is_storage_uri(text: str) -> bool:
    """Whether ``text`` is a URI of a supported scheme (not a local path)."""
    return urllib.parse.urlsplit(text.strip()).scheme.lower() in _SCHEMES


def parse_storage_uri(uri: str) -> StorageRef:
    """Split a storage URI into storage parameters and a path.

    Credentials in the URI (``user:password@``) are refused: they belong in
    the storage config, since the model key is stored and shown.
    """
    parts = urllib.parse.urlsplit(uri.strip())
    scheme = parts.scheme.lower()
    if parts.username is not None or parts.password is not None:
        raise StorageConfigError(
            "storage URI carries credentials; put them in the storage config instead"
        )
    host = parts.hostname or ""
    path = parts.path.lstrip("/")
    if scheme in {"s3", "gs", "pvc"}:
        if not parts.netloc:
            raise StorageConfigError(f"storage URI '{uri}' names no bucket or claim")
        if parts.query or parts.fragment:
            raise StorageConfigError(f"storage URI '{uri}' may not have a query or fragment")
        # The host keeps its case: bucket and claim names are case-sensitive
        # in some stores, and hostname would lowercase it.
        name = parts.netloc
        if scheme == "pvc":
            return StorageRef(StorageType.PVC, path, {"type": "pvc", "name": name})
        kind = StorageType.S3 if scheme == "s3" else StorageType.GCS
        return StorageRef(kind, path, {"type": kind.value, "bucket": name})
    if scheme in {"http", "https"}:
        if not host:
            raise StorageConfigError(f"storage URI '{uri}' names no host")
        query_names = {k.lower() for k, _ in urllib.parse.parse_qsl(parts.query)}
        if query_names & _SIGNED_QUERY_PARAMS:
            raise StorageConfigError(
                "storage URI carries a signature or token in its query; use a storage "
                "config entry (headers or a storage key) instead"
            )
        if host.endswith(AZURE_BLOB_HOST_SUFFIX):
            account = host[: -len(AZURE_BLOB_HOST_SUFFIX)]
            container, _, blob_path = path.partition("/")
            if not account or "." in account or not container:
                raise StorageConfigError(
                    f"storage URI '{uri}' is not https://<account>{AZURE_BLOB_HOST_SUFFIX}"
                    "/<container>/<path>"
                )
            return StorageRef(
                StorageType.AZURE,
                blob_path,
                {"type": "azure", "account_name": account, "container": container},
            )
        return StorageRef(StorageType.HTTP, "", {"type": "http", "url": uri.strip()})
    if not scheme:
        raise StorageConfigError(f"'{uri}' is not a storage URI (no scheme)")
    raise StorageConfigError(
        f"storage URI scheme '{scheme}' is not supported (s3, gs, pvc, http, https)"
    )
