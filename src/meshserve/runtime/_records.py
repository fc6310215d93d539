"""Records exchanged between the instance and a runtime (the SPI's payloads)."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from meshserve.errors import UnsupportedModelError

__all__ = ["LoadResult", "ModelKey", "ModelSpec", "RuntimeState", "RuntimeStatus"]


class RuntimeState(enum.Enum):
    STARTING = "STARTING"
    READY = "READY"
    FAILING = "FAILING"


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """What runtimeStatus reports; the instance sizes its cache from it."""

    state: RuntimeState
    capacity_bytes: int
    max_loading_concurrency: int
    model_loading_timeout_ms: int
    default_model_size_bytes: int
    runtime_version: str


@dataclass(frozen=True, slots=True)
class ModelKey:
    """The JSON ``modelKey`` ModelMesh Serving passes to loadModel.

    Unknown fields are kept in ``extra`` so that a key round-trips unchanged.
    """

    storage_key: str = ""
    storage_params: dict[str, str] = field(default_factory=dict)
    model_type: str = ""
    model_type_version: str = ""
    schema_path: str = ""
    disk_size_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        """Parse a modelKey; an empty string is an empty key."""
        if not text.strip():
            return cls()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UnsupportedModelError(f"modelKey is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise UnsupportedModelError("modelKey must be a JSON object")
        model_type = raw.pop("model_type", None) or {}
        if isinstance(model_type, str):
            model_type = {"name": model_type}
        disk = raw.pop("disk_size_bytes", None)
        return cls(
            storage_key=str(raw.pop("storage_key", "") or ""),
            storage_params=dict(raw.pop("storage_params", None) or {}),
            model_type=str(model_type.get("name", "") or ""),
            model_type_version=str(model_type.get("version", "") or ""),
            schema_path=str(raw.pop("schema_path", "") or ""),
            disk_size_bytes=int(disk) if disk is not None else None,
            extra=raw,
        )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Everything a runtime needs to load one model (loadModel's fields)."""

    model_id: str
    model_type: str
    model_path: str
    model_key: str = ""


@dataclass(frozen=True, slots=True)
class LoadResult:
    size_bytes: int
    max_concurrency: int = 0
