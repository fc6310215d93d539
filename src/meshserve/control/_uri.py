"""An InferenceService ``storageUri`` as ModelMesh Serving splits it: a path
inside the store plus the storage parameters that name the store."""

from __future__ import annotations

import urllib.parse

from meshserve.errors import InvalidResourceError

__all__ = ["split_storage_uri"]

_AZURE_BLOB_HOST_SUFFIX = "blob.core.windows.net"


def split_storage_uri(uri: str, *, field: str) -> tuple[str, dict[str, str]]:
    """Return ``(path, parameters)`` for a storage URI.

    ``s3://bucket/p`` -> ``p``, {type: s3, bucket}; ``gs://`` likewise with
    type gcs; ``pvc://claim/p`` -> {type: pvc, name: claim}; an
    ``https://<account>.blob.core.windows.net/<container>/p`` URL -> type
    azure; any other http(s) URL -> type http with the whole URL and an empty
    path. Other schemes raise InvalidResourceError at ``field``.
    """
    parts = urllib.parse.urlsplit(uri)
    # Go's url.Parse (which ModelMesh Serving uses) unescapes the path and
    # leaves user info out of the host.
    host = parts.netloc.rpartition("@")[2]
    path = urllib.parse.unquote(parts.path)
    relative = path.removeprefix("/")
    match parts.scheme:
        case "s3":
            return relative, {"type": "s3", "bucket": host}
        case "gs":
            return relative, {"type": "gcs", "bucket": host}
        case "pvc":
            return relative, {"type": "pvc", "name": host}
        case "http" | "https" if host.endswith(_AZURE_BLOB_HOST_SUFFIX):
            container, _, blob_path = relative.partition("/")
            account = host.split(".", 1)[0]
            return blob_path, {"type": "azure", "container": container, "account_name": account}
        case "http" | "https":
            return "", {"type": "http", "url": uri}
        case "":
            raise InvalidResourceError(
                f"storageUri {uri!r} has no scheme; use s3://, gs://, pvc://, http(s)://",
                field=field,
            )
        case scheme:
            raise InvalidResourceError(
                f"storageUri scheme {scheme!r} is not supported; use s3://, gs://, pvc://, "
                "http(s)://",
                field=field,
            )
