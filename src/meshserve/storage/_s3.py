"""S3 and S3-compatible stores, through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from meshserve.errors import (
    ArtifactNotFoundError,
    StorageAccessDeniedError,
    StorageConfigError,
    StorageError,
)
from meshserve.storage._buckets import BucketSource, StoredObject
from meshserve.storage._providers import S3Config
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import FileSink, RemoteObject, TransientStorageError
from meshserve.storage._tls import CaBundle

__all__ = ["S3Source"]

_CHUNK = 1024 * 1024

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "403",
        "401",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AllAccessDisabled",
    }
)
_TRANSIENT = frozenset(
    {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling", "503"}
)
_TRANSIENT_EXCEPTIONS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
)


class S3Source(BucketSource):
    """One model path in one bucket."""

    def __init__(self, config: S3Config, *, path: str, settings: StorageSettings) -> None:
        bucket = config.bucket_name
        if not bucket:
            raise StorageConfigError("no bucket: set 'bucket' in the storage config or parameters")
        self._bucket = bucket
        endpoint = config.endpoint_url or "aws"
        super().__init__(
            path=path,
            bucket=bucket,
            location=f"s3://{bucket}/{path}",
            identity=f"s3|{endpoint}|{bucket}|{path}",
        )
        self._ca = (
            CaBundle(config.certificate, where=self._location) if config.certificate else None
        )
        client_config = botocore.config.Config(
            # One attempt per call: the puller retries whole pulls with its own
            # backoff, so that permanent errors fail at once.
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=settings.request_timeout_s,
            read_timeout=settings.request_timeout_s,
            # Private endpoints (MinIO, SeaweedFS) rarely resolve bucket subdomains.
            s3={"addressing_style": "path" if config.endpoint_url else "auto"},
        )
        credentials: dict[str, Any] = {}
        if config.access_key_id is not None and config.secret_access_key is not None:
            credentials = {
                "aws_access_key_id": config.access_key_id.get_secret_value(),
                "aws_secret_access_key": config.secret_access_key.get_secret_value(),
            }
        # A session of its own: the default session is shared, mutable state.
        session = boto3.session.Session()
        self._client = session.client(
            "s3",
            endpoint_url=config.endpoint_url or None,
            region_name=config.region or "us-east-1",
            verify=self._ca.path if self._ca is not None else True,
            config=client_config,
            **credentials,
        )

    def _head(self, key: str) -> StoredObject | None:
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise
        return StoredObject(key, int(head.get("ContentLength", 0)), str(head.get("ETag", "")))

    def _under(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield StoredObject(
                    str(item["Key"]), int(item.get("Size", 0)), str(item.get("ETag", ""))
                )

    def _download(self, obj: RemoteObject, sink: FileSink) -> None:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": obj.name}
        if obj.version:
            # Refuse an object replaced since it was listed: the cache key
            # names the listed version.
            kwargs["IfMatch"] = obj.version
        body = self._client.get_object(**kwargs)["Body"]
        try:
            for chunk in body.iter_chunks(_CHUNK):
                sink.write(chunk)
        finally:
            body.close()

    def _translate(self, exc: Exception) -> Exception:
        return _translate(exc)

    def close(self) -> None:
        self._client.close()
        if self._ca is not None:
            self._ca.close()


def _code(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _translate(exc: Exception) -> Exception:
    """botocore's error -> the domain's (messages carry codes, not input)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = _code(exc), _status(exc)
        if code == "NoSuchBucket":
            return ArtifactNotFoundError("the bucket does not exist")
        if code in _NOT_FOUND or status == 404:
            return ArtifactNotFoundError(f"not found ({code or status})")
        if code in _DENIED or status in (401, 403):
            return StorageAccessDeniedError(f"access denied ({code or status})")
        if code == "PreconditionFailed" or status == 412:
            return TransientStorageError("the object changed while it was being pulled")
        if code in _TRANSIENT or status == 429 or status >= 500:
            return TransientStorageError(f"store error ({code or status})")
        return StorageError(f"store error ({code or status})")
    if isinstance(exc, botocore.exceptions.SSLError):
        return StorageError("TLS verification of the endpoint failed")
    if isinstance(exc, _TRANSIENT_EXCEPTIONS):
        return TransientStorageError(f"connection failed ({type(exc).__name__})")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StorageConfigError("no credentials: set access_key_id and secret_access_key")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return StorageConfigError("invalid bucket or key name")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return StorageError(f"client error ({type(exc).__name__})")
    return exc
