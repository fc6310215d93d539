"""Azure Blob Storage, through azure-storage-blob."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import azure.core.exceptions as aexc
from azure.core import MatchConditions
from azure.storage.blob import BlobServiceClient

from meshserve.errors import (
    ArtifactNotFoundError,
    StorageAccessDeniedError,
    StorageConfigError,
    StorageError,
)
from meshserve.storage._buckets import BucketSource, StoredObject
from meshserve.storage._providers import AzureConfig
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import FileSink, RemoteObject, TransientStorageError

__all__ = ["AzureSource"]


class AzureSource(BucketSource):
    """One model path in one container."""

    def __init__(self, config: AzureConfig, *, path: str, settings: StorageSettings) -> None:
        if not config.container:
            raise StorageConfigError(
                "no container: set 'container' in the storage config or parameters"
            )
        options: dict[str, Any] = {
            # One attempt per call: the puller retries whole pulls itself.
            "retry_total": 0,
            "connection_timeout": settings.request_timeout_s,
            "read_timeout": settings.request_timeout_s,
        }
        service: BlobServiceClient
        if config.connection_string is not None:
            try:
                service = BlobServiceClient.from_connection_string(
                    config.connection_string.get_secret_value(), **options
                )
            except ValueError:
                raise StorageConfigError("'connection_string' is not valid") from None
        else:
            if not config.account_name and not config.endpoint_url:
                raise StorageConfigError("set 'account_name' or 'connection_string'")
            account_url = config.endpoint_url or (
                f"https://{config.account_name}.blob.core.windows.net"
            )
            credential: Any = None
            if config.client_id or config.client_secret or config.tenant_id:
                if not (config.client_id and config.client_secret and config.tenant_id):
                    raise StorageConfigError(
                        "'client_id', 'client_secret' and 'tenant_id' go together"
                    )
                # Imported here: only service-principal configs need azure-identity.
                from azure.identity import ClientSecretCredential

                credential = ClientSecretCredential(
                    tenant_id=config.tenant_id,
                    client_id=config.client_id,
                    client_secret=config.client_secret.get_secret_value(),
                )
            elif config.account_key is not None:
                credential = {
                    "account_name": config.account_name,
                    "account_key": config.account_key.get_secret_value(),
                }
            service = BlobServiceClient(account_url, credential=credential, **options)
        self._service = service
        self._container = service.get_container_client(config.container)
        account = service.account_name or config.account_name or ""
        super().__init__(
            path=path,
            bucket=config.container,
            location=f"azure://{account}/{config.container}/{path}",
            identity=f"azure|{service.url}|{config.container}|{path}",
        )

    def _head(self, key: str) -> StoredObject | None:
        try:
            props = self._container.get_blob_client(key).get_blob_properties()
        except aexc.ResourceNotFoundError as exc:
            # A missing container is final; a missing blob may be a prefix.
            if _error_code(exc) == "ContainerNotFound":
                raise
            return None
        return StoredObject(key, int(props.size), str(props.etag or ""))

    def _under(self, prefix: str) -> Iterator[StoredObject]:
        for item in self._container.list_blobs(name_starts_with=prefix or None):
            yield StoredObject(str(item.name), int(item.size), str(item.etag or ""))

    def _download(self, obj: RemoteObject, sink: FileSink) -> None:
        kwargs: dict[str, Any] = {"max_concurrency": 1}
        if obj.version:
            kwargs["etag"] = obj.version
            kwargs["match_condition"] = MatchConditions.IfNotModified
        stream = self._container.get_blob_client(obj.name).download_blob(**kwargs)
        for chunk in stream.chunks():
            sink.write(chunk)

    def _translate(self, exc: Exception) -> Exception:
        return _translate(exc)

    def close(self) -> None:
        self._service.close()


def _error_code(exc: aexc.HttpResponseError) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, aexc.ResourceNotFoundError):
        if _error_code(exc) == "ContainerNotFound":
            return ArtifactNotFoundError("the container does not exist")
        return ArtifactNotFoundError("not found (404)")
    if isinstance(exc, aexc.ClientAuthenticationError):
        return StorageAccessDeniedError(f"access denied ({_error_code(exc) or exc.status_code})")
    if isinstance(exc, aexc.ResourceModifiedError):
        return TransientStorageError("the blob changed while it was being pulled")
    if isinstance(exc, aexc.HttpResponseError):
        status = int(exc.status_code or 0)
        code = _error_code(exc) or str(status)
        if status in (401, 403):
            return StorageAccessDeniedError(f"access denied ({code})")
        if status == 404:
            return ArtifactNotFoundError(f"not found ({code})")
        if status in (408, 429) or status >= 500:
            return TransientStorageError(f"store error ({code})")
        return StorageError(f"store error ({code})")
    if isinstance(exc, aexc.ServiceRequestError | aexc.ServiceResponseError):
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return StorageError("TLS verification of the endpoint failed")
        return TransientStorageError(f"connection failed ({type(exc).__name__})")
    if isinstance(exc, aexc.AzureError):
        return StorageError(f"client error ({type(exc).__name__})")
    return exc
