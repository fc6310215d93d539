"""A pull, planned: the model key and path resolved against the storage
configuration into one storage config, a checked remote path, an optional
``sha256`` pin, the secrets to keep out of messages, and the key under which
concurrent pulls of the same artifact share one download."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from meshserve import resources
from meshserve.errors import ArtifactRejectedError, InvalidRequestError, StorageConfigError
from meshserve.protocol.model_key import ModelKey
from meshserve.storage._config import ResolvedStorage, StorageConfig
from meshserve.storage._paths import check_remote_path
from meshserve.storage._providers import (
    AzureConfig,
    GcsConfig,
    HttpConfig,
    PvcConfig,
    S3Config,
    config_fingerprint,
    secret_values,
)
from meshserve.storage._uri import is_storage_uri, parse_storage_uri

__all__ = ["PullPlan", "check_pin", "plan_pull", "where_of"]


@dataclass(frozen=True, slots=True)
class PullPlan:
    """A pull, resolved: which config, which path, and how to name it."""

    resolved: ResolvedStorage
    path: str
    where: str
    """Storage key and path, for messages (never a credential)."""
    sha256: str | None
    secrets: tuple[str, ...]
    fetch_key: str


def plan_pull(model_path: str, *, model_key: str, config: StorageConfig) -> PullPlan | None:
    """What pulling ``model_path`` as ``model_key`` describes it takes, with
    ``config``'s storage keys; None for a plain local path (no storage)."""
    key = ModelKey.parse(model_key)
    params = dict(key.storage_params)
    path = model_path
    if is_storage_uri(model_path):
        # A URI in the path: its parameters win, as ModelMesh Serving's
        # controller lets storageUri win over storage.parameters.
        try:
            ref = parse_storage_uri(model_path)
        except InvalidRequestError as exc:
            raise StorageConfigError(exc.message) from None
        params.update(ref.params)
        path = ref.path
    elif not key.uses_storage:
        return None
    resolved = config.resolve(storage_key=key.storage_key, params=params)
    where = where_of(resolved, path)
    path = check_remote_path(path, where=where)
    sha256 = params.get("sha256", "").strip().lower() or None
    if sha256 is not None and (
        len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)
    ):
        raise StorageConfigError(f"{where}: 'sha256' is not a hex SHA-256 digest")
    fingerprint = config_fingerprint(resolved.config)
    return PullPlan(
        resolved=resolved,
        path=path,
        where=where,
        sha256=sha256,
        secrets=tuple(secret_values(resolved.config)),
        fetch_key=hashlib.sha256(f"{fingerprint}|{path}".encode()).hexdigest(),
    )


def check_pin(plan: PullPlan, *, is_directory: bool, digest: str | None) -> None:
    """Refuse an artifact that does not match the ``sha256`` its model key
    pins (``digest`` is the artifact's; a pin names one file)."""
    if plan.sha256 is None:
        return
    if is_directory:
        raise ArtifactRejectedError(
            f"{plan.where}: 'sha256' pins a single file, but the path is a directory"
        )
    if digest != plan.sha256:
        raise ArtifactRejectedError(
            f"{plan.where}: sha256 mismatch (expected {plan.sha256}, got {digest}); refused"
        )


def where_of(resolved: ResolvedStorage, path: str) -> str:
    """How messages name a pull: storage key, type, container, path."""
    config = resolved.config
    key = f"storage key '{resolved.key}'" if resolved.key else "no storage key"
    detail = ""
    if isinstance(config, S3Config) and config.bucket_name:
        detail = f", bucket '{config.bucket_name}'"
    elif isinstance(config, GcsConfig) and config.bucket:
        detail = f", bucket '{config.bucket}'"
    elif isinstance(config, AzureConfig) and config.container:
        detail = f", container '{config.container}'"
    elif isinstance(config, PvcConfig) and config.name:
        detail = f", claim '{config.name}'"
    elif isinstance(config, HttpConfig) and config.url:
        detail = f", url '{resources.redact_uri(config.url)}'"
    return f"{key} ({config.type}{detail}), path '{path}'"
