"""Typed records kept in the store: registered models and vmodels."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import orjson

from meshserve._ids import InstanceId, ModelId, VModelId

__all__ = [
    "CopyRecord",
    "CopyState",
    "InstanceRecord",
    "ModelRecord",
    "VModelRecord",
    "decode_record",
    "encode_record",
]


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A registered model: what to load and how recently it was wanted."""

    model_id: ModelId
    type: str
    path: str = ""
    key: str = ""
    auto_delete: bool = False
    """Delete the model once no vmodel refers to it (setVModel's
    autoDeleteTargetModel)."""
    registered_ms: int = 0
    last_used_ms: int = 0

    def same_model(self, *, type: str, path: str, key: str) -> bool:
        return (self.type, self.path, self.key) == (type, path, key)

    @property
    def last_requested_ms(self) -> int:
        """The last use, if it was a request (0: never requested).

        A model registered without a last use gets one from before its
        registration (an eviction priority: a model nobody asked for goes
        first), which is no request; requests only move it later."""
        return self.last_used_ms if self.last_used_ms > self.registered_ms else 0


@dataclass(frozen=True, slots=True)
class VModelRecord:
    """An alias whose requests go to ``active_model_id`` while it moves to
    ``target_model_id``."""

    vmodel_id: VModelId
    active_model_id: ModelId
    target_model_id: ModelId
    owner: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def transitioning(self) -> bool:
        return self.active_model_id != self.target_model_id


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A live instance, as the others see it (bound to its lease)."""

    instance_id: InstanceId
    address: str
    """Internal gRPC address other instances forward requests to."""
    capacity_bytes: int = 0
    used_bytes: int = 0
    model_count: int = 0
    lru_oldest_ms: int = 0
    """Last use of its least recently used model (0: nothing loaded)."""
    victim_value: float = 0.0
    """With ``cache.evictionPolicy: gdsf``: what evicting its first victim
    would lose (decayed uses x reload cost / size, two significant digits);
    placement puts a new copy where it is lowest. 0 with lru."""
    loading_slots: int = 1
    loading_count: int = 0
    rpm: int = 0
    """Requests per minute it served itself, lately."""
    labels: tuple[str, ...] = ()
    shutting_down: bool = False
    started_ms: int = 0
    version: str = ""
    data_address: str = ""
    """Its data port (``host:port``), where forwarded inference goes rather
    than ``address`` ("": none, an older version or ``mesh.dataPlane`` off)."""

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes


class CopyState(enum.StrEnum):
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CopyRecord:
    """One instance's copy of a model (bound to that instance's lease).

    A failed load is a copy in state FAILED: it keeps the reason, where and
    when, and goes when it expires or the instance does.
    """

    model_id: ModelId
    instance_id: InstanceId
    state: CopyState
    time_ms: int
    error: str = ""
    error_type: str = ""
    """The error's class name, so a peer can re-raise the same type."""
    size_bytes: int = 0
    """A loaded copy's size (0 otherwise), so every instance can show it."""


Record = TypeVar("Record", ModelRecord, VModelRecord, InstanceRecord, CopyRecord)


def encode_record(record: ModelRecord | VModelRecord | InstanceRecord | CopyRecord) -> bytes:
    return orjson.dumps(asdict(record))


def decode_record(cls: type[Record], data: bytes) -> Record:
    """Decode a record; keys this version does not know are ignored, so an
    older instance can read what a newer one wrote."""
    raw: dict[str, Any] = orjson.loads(data)
    known = {f.name for f in fields(cls)}
    values = {k: v for k, v in raw.items() if k in known}
    if cls is InstanceRecord and "labels" in values:
        values["labels"] = tuple(values["labels"])
    if cls is CopyRecord and "state" in values:
        values["state"] = CopyState(values["state"])
    return cls(**values)
