"""Records of the coordination store, modelled on etcd's v3 data model.

Every change gets a store-wide *revision* that only grows. A key remembers
the revision that created it (``create_revision``), the one that last changed
it (``mod_revision``) and how many times it was written since it was created
(``version``). All changes of one call (a transaction, a prefix delete, a
lease expiry) share one revision.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import NewType, TypeAlias

__all__ = [
    "Compare",
    "DeleteOp",
    "DeletePrefixOp",
    "Event",
    "EventKind",
    "KeyValue",
    "LeaseId",
    "Op",
    "PutOp",
    "RangeResult",
    "TxnResult",
    "WatchStream",
    "check_key",
    "check_txn",
    "prefix_range_end",
]

LeaseId = NewType("LeaseId", int)
"""A lease granted by a store; keys attached to it die with it."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as the store holds it at some revision."""

    key: str
    value: bytes
    create_revision: int
    """Revision that created the key; 0 in a DELETE event's tombstone."""
    mod_revision: int
    """Revision of the last change; the value to compare-and-swap against."""
    version: int
    """Writes since creation (1 after the first put); 0 in a tombstone."""
    lease: LeaseId | None


class EventKind(enum.Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """One change seen by a watch.

    For DELETE, ``kv`` is a tombstone (etcd's shape): the key, an empty value,
    ``mod_revision`` set to the deleting revision, the other fields zero.
    ``prev`` is the key before the change, or None if it did not exist (or,
    on etcd, if that older version is already compacted).
    """

    kind: EventKind
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    """Keys under a prefix, sorted by key (UTF-8 byte order), at ``revision``.

    Watching from ``revision + 1`` continues exactly where this list ends.
    """

    kvs: tuple[KeyValue, ...]
    revision: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Compare:
    """A transaction guard: ``key``'s mod_revision equals ``mod_revision``.

    0 means "the key does not exist" (etcd compares a missing key as 0).
    """

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class PutOp:
    key: str
    value: bytes
    lease: LeaseId | None = None


@dataclass(frozen=True, slots=True)
class DeleteOp:
    key: str


@dataclass(frozen=True, slots=True)
class DeletePrefixOp:
    prefix: str


Op: TypeAlias = PutOp | DeleteOp | DeletePrefixOp


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether every Compare held (and so every op was applied).

    ``revision`` is the store revision after the call: the new one when the
    ops changed something, the current one otherwise.
    """

    succeeded: bool
    revision: int


WatchStream: TypeAlias = AsyncIterator[tuple[Event, ...]]
"""Batches of events in revision order; a batch never splits a revision."""


def prefix_range_end(prefix: bytes) -> bytes | None:
    """The first key after every key starting with ``prefix`` (etcd's range_end).

    None means "no upper bound" (empty prefix, or only 0xff bytes).
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_txn(ops: Sequence[Op]) -> None:
    """Refuse what etcd refuses: empty keys, and ops that overlap a put.

    Backends call this so both reject the same requests the same way.
    """
    put_keys: set[str] = set()
    for op in ops:
        if isinstance(op, PutOp):
            check_key(op.key)
            if op.key in put_keys:
                raise ValueError(f"duplicate key {op.key!r} in one transaction")
            put_keys.add(op.key)
    for op in ops:
        if isinstance(op, DeleteOp) and op.key in put_keys:
            raise ValueError(f"key {op.key!r} is both put and deleted in one transaction")
        if isinstance(op, DeletePrefixOp) and any(k.startswith(op.prefix) for k in put_keys):
            raise ValueError(f"prefix {op.prefix!r} deletes a key put in the same transaction")


def check_key(key: str) -> None:
    if not key:
        raise ValueError("a key must not be empty")
