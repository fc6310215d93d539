"""The status of the mesh as one typed snapshot: what the status page
(``GET /status``, polling ``GET /status.json``) and ``meshserve status``
show. An instance builds it (``meshserve.server._status_snapshot``),
serialises it with :meth:`StatusSnapshot.to_json`, and the CLI reads it
back with :meth:`StatusSnapshot.from_json`.

Model ids and failure reasons are client data: whoever renders a snapshot
must escape them (the page sets ``textContent`` only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "FailureRow",
    "InstanceRow",
    "LoadRow",
    "ModelRow",
    "ServiceRow",
    "StatusSnapshot",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceRow:
    instance_id: str
    capacity_bytes: int
    used_bytes: int
    model_count: int
    lru_oldest_ms: int
    """Last use of its least recently used copy (0: nothing loaded): how
    long a copy may sit unused there before it is evicted."""
    rpm: int
    """Requests per minute it served itself, lately (to the nearest 10)."""
    loading_count: int
    loading_slots: int
    shutting_down: bool
    version: str
    here: bool
    """The instance that built the snapshot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRow:
    model_id: str
    type: str
    copies: tuple[str, ...]
    """Instances with a loaded copy."""
    loading_on: tuple[str, ...]
    size_bytes: int
    """The size of a loaded copy (0: none is loaded)."""
    last_used_ms: int
    """The last request anywhere in the mesh (0: never requested)."""
    rpm_here: int
    """Requests per minute the instance that built the snapshot served."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadRow:
    """A copy being loaded (a load in flight)."""

    model_id: str
    instance_id: str
    since_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FailureRow:
    """A failed load, kept until its record expires (ModelMesh's
    ``loadFailureExpiry``) or its instance goes."""

    model_id: str
    instance_id: str
    time_ms: int
    reason: str
    error_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRow:
    """An InferenceService and its state, as ``meshserve get isvc`` shows it."""

    namespace: str
    name: str
    ready: str
    """The Ready condition: True, False or Unknown."""
    active_model_state: str
    target_model_state: str
    transition_status: str
    total_copies: int
    failed_copies: int
    failure_reason: str
    failure_message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusSnapshot:
    served_by: str
    """The instance that built it."""
    time_ms: int
    refresh_s: float
    """How often the page polls for a new one."""
    instances: tuple[InstanceRow, ...]
    models: tuple[ModelRow, ...]
    """The hottest models: busiest here first, then the most recently used."""
    models_total: int
    """Models the caller may see, of which ``models`` are the first."""
    loads: tuple[LoadRow, ...]
    failures: tuple[FailureRow, ...]
    """The most recent first."""
    services: tuple[ServiceRow, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> StatusSnapshot:
        """A snapshot as :meth:`to_json` wrote it; keys this version does not
        know are ignored. ValueError when it is not one."""
        try:
            raw = orjson.loads(data)
            return _flat(
                cls,
                raw,
                instances=_rows(InstanceRow, raw.get("instances", ())),
                models=_rows(ModelRow, raw.get("models", ())),
                loads=_rows(LoadRow, raw.get("loads", ())),
                failures=_rows(FailureRow, raw.get("failures", ())),
                services=_rows(ServiceRow, raw.get("services", ())),
            )
        except (orjson.JSONDecodeError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a status snapshot: {exc}") from None


_Row = TypeVar("_Row", bound="DataclassInstance")


def _flat(cls: type[_Row], raw: Mapping[str, Any], **nested: tuple[Any, ...]) -> _Row:
    """``cls`` from a JSON object of its fields (lists as tuples), with the
    ``nested`` rows already read; unknown keys are ignored, missing ones
    are a TypeError."""
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
    return cls(**{**values, **nested})


def _rows(cls: type[_Row], items: Iterable[Mapping[str, Any]]) -> tuple[_Row, ...]:
    return tuple(_flat(cls, item) for item in items)
