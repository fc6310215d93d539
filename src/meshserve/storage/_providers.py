"""Typed provider configs: one storage-config entry each (ModelMesh Serving's fields).

Credentials are ``SecretStr``: they show as ``**********`` in ``repr``, ``str``
and logs, and are revealed only where a client is built.
"""

from __future__ import annotations

import enum
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

__all__ = [
    "CREDENTIAL_FIELDS",
    "AzureConfig",
    "GcsConfig",
    "HttpConfig",
    "ProviderConfig",
    "PvcConfig",
    "S3Config",
    "StorageType",
    "config_fingerprint",
    "secret_values",
]


class StorageType(enum.StrEnum):
    """The ``type`` of a storage-config entry (and of ``storage_params``)."""

    S3 = "s3"
    GCS = "gcs"
    AZURE = "azure"
    HTTP = "http"
    PVC = "pvc"


CREDENTIAL_FIELDS = frozenset(
    {
        "access_key_id",
        "secret_access_key",
        "private_key",
        "private_key_id",
        "connection_string",
        "client_secret",
        "client_key",
        "account_key",
        "sas_token",
        "headers",
    }
)
"""Fields that may hold a credential. They may come only from the storage
config, never from ``storage_params``: the model key is stored and shown."""


class _Provider(BaseModel):
    # Entries written for ModelMesh Serving may carry fields meshserve does not
    # use; refusing them would refuse working Secrets.
    model_config = ConfigDict(extra="ignore", frozen=True)


class S3Config(_Provider):
    """An S3 (or S3-compatible) store."""

    type: Literal[StorageType.S3] = StorageType.S3
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    endpoint_url: str | None = None
    """None: AWS itself. Set for MinIO, SeaweedFS, Ceph..."""
    region: str | None = None
    bucket: str | None = None
    default_bucket: str | None = None
    """Older ModelMesh Serving configs name the bucket so."""
    certificate: str | None = None
    """PEM of a CA to trust besides the system ones (a private endpoint)."""

    @property
    def bucket_name(self) -> str | None:
        return self.bucket or self.default_bucket or None


class GcsConfig(_Provider):
    """A Google Cloud Storage bucket; anonymous when no private key is set."""

    type: Literal[StorageType.GCS] = StorageType.GCS
    private_key: SecretStr | None = None
    private_key_id: SecretStr | None = None
    client_email: str | None = None
    token_uri: str = "https://oauth2.googleapis.com/token"
    project_id: str | None = None
    bucket: str | None = None
    endpoint_url: str | None = None
    """meshserve's addition: another endpoint (an emulator, a private gateway)."""


class AzureConfig(_Provider):
    """An Azure Blob Storage container."""

    type: Literal[StorageType.AZURE] = StorageType.AZURE
    account_name: str | None = None
    container: str | None = None
    connection_string: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    tenant_id: str | None = None
    account_key: SecretStr | None = None
    endpoint_url: str | None = None
    """meshserve's addition: the blob endpoint when not
    ``https://<account_name>.blob.core.windows.net``."""


class HttpConfig(_Provider):
    """A file served over HTTP(S)."""

    type: Literal[StorageType.HTTP] = StorageType.HTTP
    url: str | None = None
    """The file's URL, or a base URL the model path is appended to."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Sent with every request (often Authorization), so treated as secret."""
    certificate: str | None = None
    """PEM of a CA to trust besides the system ones."""
    client_certificate: str | None = None
    """PEM of a client certificate (mutual TLS), with ``client_key``."""
    client_key: SecretStr | None = None

    @field_validator("headers", mode="before")
    @classmethod
    def _headers_from_json(cls, value: Any) -> Any:
        # storage_params carry strings only, so headers may arrive as JSON.
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


class PvcConfig(_Provider):
    """A persistent volume claim, mounted under the configured pvc root."""

    type: Literal[StorageType.PVC] = StorageType.PVC
    name: str | None = None


ProviderConfig = Annotated[
    S3Config | GcsConfig | AzureConfig | HttpConfig | PvcConfig, Field(discriminator="type")
]


def secret_values(config: BaseModel) -> list[str]:
    """Every secret value in ``config``, to scrub them from any text that
    leaves the puller (library error messages may echo what they were given)."""
    found: list[str] = []
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, dict):
            found.extend(v.get_secret_value() for v in value.values() if isinstance(v, SecretStr))
    # Parts of a connection string (AccountKey=...) are secrets on their own.
    extra: list[str] = []
    for secret in found:
        if ";" in secret and "=" in secret:
            for part in secret.split(";"):
                key, _, value = part.partition("=")
                if key.strip().lower() in {"accountkey", "sharedaccesssignature"} and value:
                    extra.append(value)
    return [s for s in found + extra if len(s) >= 4]


def config_fingerprint(config: BaseModel) -> str:
    """A digest of the whole config, secrets included, that tells two configs
    apart without holding their secrets (used only as an in-memory key)."""

    def reveal(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        return value

    data = {name: reveal(getattr(config, name)) for name in type(config).model_fields}
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
