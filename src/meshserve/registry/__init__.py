"""Typed records over the store and their watched in-memory mirror."""

from meshserve.registry._records import (
    CopyRecord,
    CopyState,
    InstanceRecord,
    ModelRecord,
    VModelRecord,
)
from meshserve.registry._registry import Registry, Versioned

__all__ = [
    "CopyRecord",
    "CopyState",
    "InstanceRecord",
    "ModelRecord",
    "Registry",
    "VModelRecord",
    "Versioned",
]
