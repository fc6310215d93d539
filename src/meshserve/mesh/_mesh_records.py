"""The registry's records of the whole mesh at one moment, for a status view."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshserve.registry import CopyRecord, InstanceRecord, ModelRecord

__all__ = ["MeshRecords"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshRecords:
    """What every instance knows of the mesh (from the registry's watched
    mirror), and this instance's own request rates: the input of the status
    page and ``meshserve status``."""

    instances: tuple[InstanceRecord, ...]
    """Every live instance; this one's record is fresh, not the published one."""
    models: tuple[ModelRecord, ...]
    copies: tuple[CopyRecord, ...]
    """Every copy of every model: loaded, loading and failed."""
    rpm_here: Mapping[str, int]
    """Model id -> requests per minute this instance served lately (only
    models with any)."""
