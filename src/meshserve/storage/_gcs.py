"""Google Cloud Storage, through google-cloud-storage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import google.api_core.exceptions as gexc
import google.auth.exceptions
import requests.exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.cloud.storage import exceptions as gcs_exceptions
from google.oauth2 import service_account

from meshserve.errors import (
    ArtifactNotFoundError,
    StorageAccessDeniedError,
    StorageConfigError,
    StorageError,
)
from meshserve.storage._buckets import BucketSource, StoredObject
from meshserve.storage._providers import GcsConfig
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import FileSink, RemoteObject, TransientStorageError

__all__ = ["GcsSource"]

_READ_ONLY_SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"

# google-auth leaves these constructors unannotated; these are their types.
_from_service_account_info: Callable[..., Credentials] = (
    service_account.Credentials.from_service_account_info
)
_anonymous: Callable[[], Credentials] = AnonymousCredentials


class GcsSource(BucketSource):
    """One model path in one bucket."""

    def __init__(self, config: GcsConfig, *, path: str, settings: StorageSettings) -> None:
        if not config.bucket:
            raise StorageConfigError("no bucket: set 'bucket' in the storage config or parameters")
        super().__init__(
            path=path,
            bucket=config.bucket,
            location=f"gs://{config.bucket}/{path}",
            identity=f"gcs|{config.endpoint_url or 'google'}|{config.bucket}|{path}",
        )
        self._timeout = settings.request_timeout_s
        credentials: Credentials
        if config.private_key is not None:
            if not config.client_email:
                raise StorageConfigError("'private_key' needs 'client_email'")
            info: dict[str, Any] = {
                "type": "service_account",
                "private_key": config.private_key.get_secret_value(),
                "client_email": config.client_email,
                "token_uri": config.token_uri,
            }
            if config.private_key_id is not None:
                info["private_key_id"] = config.private_key_id.get_secret_value()
            try:
                credentials = _from_service_account_info(info, scopes=[_READ_ONLY_SCOPE])
            except (ValueError, TypeError):
                raise StorageConfigError(
                    "'private_key' is not a valid service account key"
                ) from None
        else:
            # Public buckets (and emulators) need no credentials.
            credentials = _anonymous()
        options = {"api_endpoint": config.endpoint_url} if config.endpoint_url else None
        self._client = storage.Client(
            project=config.project_id or "meshserve",
            credentials=credentials,
            client_options=options,
        )

    def _head(self, key: str) -> StoredObject | None:
        blob = self._client.bucket(self._bucket_name).get_blob(
            key, timeout=self._timeout, retry=None
        )
        return None if blob is None else _stored(blob)

    def _under(self, prefix: str) -> Iterator[StoredObject]:
        for blob in self._client.list_blobs(
            self._bucket_name, prefix=prefix, timeout=self._timeout, retry=None
        ):
            yield _stored(blob)

    def _download(self, obj: RemoteObject, sink: FileSink) -> None:
        blob = self._client.bucket(self._bucket_name).blob(obj.name)
        generation = int(obj.version) if obj.version.isdigit() else None
        blob.download_to_file(
            sink, if_generation_match=generation, timeout=self._timeout, retry=None
        )

    def _translate(self, exc: Exception) -> Exception:
        return _translate(exc)

    def close(self) -> None:
        self._client.close()


def _stored(blob: Any) -> StoredObject:
    return StoredObject(
        str(blob.name), int(blob.size or 0), str(blob.generation or blob.etag or "")
    )


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, gexc.NotFound):
        return ArtifactNotFoundError("not found (404)")
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return StorageAccessDeniedError(f"access denied ({exc.code})")
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return StorageAccessDeniedError("the service account's token was refused")
    if isinstance(exc, gexc.PreconditionFailed):
        return TransientStorageError("the object changed while it was being pulled")
    if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.RetryError):
        return TransientStorageError(f"store error ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.SSLError):
        return StorageError("TLS verification of the endpoint failed")
    if isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | requests.exceptions.ChunkedEncodingError
        | google.auth.exceptions.TransportError,
    ):
        return TransientStorageError(f"connection failed ({type(exc).__name__})")
    if isinstance(exc, gexc.GoogleAPICallError):
        return StorageError(f"store error ({exc.code})")
    if isinstance(exc, gcs_exceptions.DataCorruption):
        return TransientStorageError("the download's checksum did not match")
    if isinstance(exc, gcs_exceptions.InvalidResponse):
        status = int(getattr(exc.response, "status_code", 0) or 0)
        if status == 404:
            return ArtifactNotFoundError("not found (404)")
        if status in (401, 403):
            return StorageAccessDeniedError(f"access denied ({status})")
        if status == 412:
            return TransientStorageError("the object changed while it was being pulled")
        if status == 429 or status >= 500:
            return TransientStorageError(f"store error ({status})")
        return StorageError(f"store error ({status})")
    return exc
