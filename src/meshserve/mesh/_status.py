"""Model and vmodel states as the management API reports them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["CopyInfo", "ModelState", "ModelStatus", "ModelSummary", "VModelState", "VModelStatus"]


class ModelState(enum.Enum):
    """mmesh ModelStatusInfo.ModelStatus, same names."""

    NOT_FOUND = "NOT_FOUND"
    NOT_LOADED = "NOT_LOADED"
    LOADING = "LOADING"
    LOADED = "LOADED"
    LOADING_FAILED = "LOADING_FAILED"
    UNKNOWN = "UNKNOWN"


class VModelState(enum.Enum):
    """mmesh VModelStatusInfo.VModelStatus, same names."""

    NOT_FOUND = "NOT_FOUND"
    DEFINED = "DEFINED"
    TRANSITIONING = "TRANSITIONING"
    TRANSITION_FAILED = "TRANSITION_FAILED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class CopyInfo:
    location: str
    state: ModelState
    time_ms: int


@dataclass(frozen=True, slots=True)
class ModelStatus:
    state: ModelState
    errors: tuple[str, ...] = ()
    copies: tuple[CopyInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class VModelStatus:
    state: VModelState
    active_model_id: str = ""
    target_model_id: str = ""
    active_status: ModelStatus | None = None
    target_status: ModelStatus | None = None
    owner: str = ""


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One registered model as ``models list`` shows it (meshserve's own)."""

    model_id: str
    type: str
    path: str
    status: ModelStatus
    copies: int = 0
    """Loaded copies in the mesh."""
    size_bytes: int = 0
    """The size of a loaded copy (0: none is loaded)."""
    last_used_ms: int = 0
    """The last request anywhere in the mesh, as the model's record has it
    (0: never requested)."""
    load_count: int = 0
    """This instance's loads of it (and below, its evictions and last load)."""
    eviction_count: int = 0
    last_load_ms: int = 0
    """How long the last successful load took."""
    auto_delete: bool = False
    vmodels: tuple[str, ...] = field(default_factory=tuple)
    pull_ms: int = 0
    """How long the last pull from storage took."""
    pull_bytes: int = 0
    """Bytes pulled (so far, while a pull runs)."""
    pull_total_bytes: int = 0
    pulled_from_cache: bool = False
