"""ModelMesh's ``modelKey``: the JSON ModelMesh Serving registers with a model.

    {"storage_key": "my-s3", "storage_params": {"bucket": "models"},
     "model_type": {"name": "sklearn", "version": "1"}, "schema_path": "s.json",
     "disk_size_bytes": 1234}

It travels with the model from registration to the runtime: the puller
reads where the model lives from it (``meshserve.storage``), a runtime its
format and size on disk (``meshserve.runtime``). This is the one parser of
it; each reader says what a malformed key means to it (``error``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from meshserve.errors import MeshServeError, StorageConfigError

__all__ = ["ModelKey"]


@dataclass(frozen=True, slots=True)
class ModelKey:
    """A parsed model key; fields it does not know are kept in ``extra`` so
    that a key round-trips unchanged."""

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
    def parse(cls, text: str, *, error: type[MeshServeError] = StorageConfigError) -> ModelKey:
        """Parse a model key; an empty string is an empty key. A malformed
        key raises ``error``: by default a storage config error (the key
        says where the model lives); a runtime reading it at load time
        passes its own."""
        if not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise error(f"model key is not valid JSON: {exc.msg}") from None
        if not isinstance(raw, dict):
            raise error("model key must be a JSON object")
        raw = dict(raw)
        model_type = raw.pop("model_type", None) or {}
        if isinstance(model_type, str):
            model_type = {"name": model_type}
        if not isinstance(model_type, dict):
            raise error("model key's model_type must be an object")
        params = raw.pop("storage_params", None) or {}
        if not isinstance(params, dict):
            raise error("model key's storage_params must be an object")
        storage_key = raw.pop("storage_key", None)
        schema_path = raw.pop("schema_path", None)
        disk = raw.pop("disk_size_bytes", None)
        try:
            disk_size = int(disk) if disk is not None else None
        except (TypeError, ValueError):
            raise error("model key's disk_size_bytes must be an integer") from None
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
