"""The model key's storage part, as ModelMesh Serving writes it.

    {"storage_key": "my-s3", "storage_params": {"bucket": "models"},
     "model_type": {"name": "sklearn", "version": "1"}, "schema_path": "s.json"}

It names where the model lives; the storage config holds the credentials, so
a key that carries one is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshserve.errors import StorageConfigError
from meshserve.storage._providers import CREDENTIAL_FIELDS

__all__ = ["ModelKeyInfo", "build_model_key", "refuse_credential_params"]


@dataclass(frozen=True, slots=True)
class ModelKeyInfo:
    """The fields of a model key the puller reads; others are kept in ``extra``."""

    storage_key: str | None = None
    storage_params: dict[str, str] = field(default_factory=dict)
    model_type: str = ""
    model_type_version: str = ""
    schema_path: str | None = None
    disk_size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_storage(self) -> bool:
        """Whether the path is to be pulled from storage (ModelMesh Serving
        sets a storage key or parameters; plain registrations set neither)."""
        return bool(self.storage_key) or bool(self.storage_params)

    @classmethod
    def parse(cls, text: str) -> ModelKeyInfo:
        """Parse a model key; an empty string is an empty key."""
        if not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StorageConfigError(f"model key is not valid JSON: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise StorageConfigError("model key must be a JSON object")
        raw = dict(raw)
        model_type = raw.pop("model_type", None) or {}
        if isinstance(model_type, str):
            model_type = {"name": model_type}
        if not isinstance(model_type, dict):
            raise StorageConfigError("model key's model_type must be an object")
        params = raw.pop("storage_params", None) or {}
        if not isinstance(params, dict):
            raise StorageConfigError("model key's storage_params must be an object")
        storage_key = raw.pop("storage_key", None)
        schema_path = raw.pop("schema_path", None)
        disk = raw.pop("disk_size_bytes", None)
        try:
            disk_size = int(disk) if disk is not None else None
        except (TypeError, ValueError):
            raise StorageConfigError("model key's disk_size_bytes must be an integer") from None
        # ModelMesh's deprecated top-level bucket.
        bucket = raw.pop("bucket", None)
        if bucket and "bucket" not in params:
            params["bucket"] = bucket
        return cls(
            storage_key=str(storage_key) if storage_key else None,
            storage_params={str(k): str(v) for k, v in params.items()},
            model_type=str(model_type.get("name") or ""),
            model_type_version=str(model_type.get("version") or ""),
            schema_path=str(schema_path) if schema_path else None,
            disk_size_bytes=disk_size,
            extra=raw,
        )

    def to_json(self) -> str:
        """The key as JSON, in ModelMesh's field names (empty fields left out)."""
        out: dict[str, Any] = dict(self.extra)
        if self.storage_key:
            out["storage_key"] = self.storage_key
        if self.storage_params:
            out["storage_params"] = dict(self.storage_params)
        if self.model_type:
            model_type = {"name": self.model_type}
            if self.model_type_version:
                model_type["version"] = self.model_type_version
            out["model_type"] = model_type
        if self.schema_path:
            out["schema_path"] = self.schema_path
        if self.disk_size_bytes is not None:
            out["disk_size_bytes"] = self.disk_size_bytes
        return json.dumps(out, sort_keys=True, separators=(",", ":"))


def build_model_key(
    *,
    model_type: str = "",
    model_type_version: str = "",
    storage_key: str | None = None,
    storage_params: Mapping[str, str] | None = None,
    schema_path: str | None = None,
) -> str:
    """A model key JSON for a registration (``models register``, the
    controller). Refuses credential fields in ``storage_params``."""
    params = {str(k): str(v) for k, v in (storage_params or {}).items()}
    refuse_credential_params(params)
    return ModelKeyInfo(
        storage_key=storage_key or None,
        storage_params=params,
        model_type=model_type,
        model_type_version=model_type_version,
        schema_path=schema_path or None,
    ).to_json()


def refuse_credential_params(params: Mapping[str, str]) -> None:
    """StorageConfigError if ``params`` (``storage_params``) has a field that
    holds a credential: those come from the storage config only."""
    for name in params:
        if name in CREDENTIAL_FIELDS:
            raise StorageConfigError(
                f"storage parameter '{name}' is a credential: put it in the storage "
                "config and name its key, so it never travels in the model key"
            )
