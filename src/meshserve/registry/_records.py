"""Typed records kept in the store: registered models and vmodels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

import orjson

__all__ = ["ModelRecord", "VModelRecord", "decode_record", "encode_record"]


@dataclass(frozen=True, slots=True)
class ModelRecord:
    """A registered model: what to load and how recently it was wanted."""

    model_id: str
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


@dataclass(frozen=True, slots=True)
class VModelRecord:
    """An alias whose requests go to ``active_model_id`` while it moves to
    ``target_model_id``."""

    vmodel_id: str
    active_model_id: str
    target_model_id: str
    owner: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def transitioning(self) -> bool:
        return self.active_model_id != self.target_model_id


Record = TypeVar("Record", ModelRecord, VModelRecord)


def encode_record(record: ModelRecord | VModelRecord) -> bytes:
    return orjson.dumps(asdict(record))


def decode_record(cls: type[Record], data: bytes) -> Record:
    """Decode a record; keys this version does not know are ignored, so an
    older instance can read what a newer one wrote."""
    raw: dict[str, Any] = orjson.loads(data)
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in raw.items() if k in known})
