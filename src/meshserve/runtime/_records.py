"""Records exchanged between the instance and a runtime (the SPI's payloads)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["LoadResult", "ModelSpec", "RuntimeState", "RuntimeStatus"]


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
