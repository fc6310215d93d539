"""What every store client offers the puller: list an artifact, download its files.

A source is built for one config and one model path. ``list`` finds out
whether the path is a single object or a prefix (a directory tree), with
sizes and versions (ETag, generation) but no content, which is enough to look
the artifact up in the cache. ``download`` streams one object into a
``FileSink``. Both run in a worker thread; they raise the domain's
``StorageError`` types for permanent failures and ``TransientStorageError``
for those worth retrying.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Protocol

__all__ = ["FileSink", "Listing", "RemoteObject", "Source", "TransientStorageError"]


class TransientStorageError(Exception):
    """A failure that may pass: 5xx, 429, timeouts, dropped connections."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RemoteObject:
    """One file of an artifact."""

    name: str
    """The store's name for it (object key, blob name, URL)."""
    rel_path: pathlib.PurePosixPath
    """Where it lands, relative to the model directory (checked safe)."""
    size: int | None
    """Bytes, when the store reported them."""
    version: str
    """ETag, generation or Last-Modified; '' when the store gave none (then
    the artifact is not cached: nothing would tell a changed one apart)."""


@dataclass(frozen=True, slots=True)
class Listing:
    """What a path holds."""

    name: str
    """The artifact's local name: the last part of the path."""
    objects: tuple[RemoteObject, ...]
    is_directory: bool

    @property
    def known_bytes(self) -> int:
        return sum(o.size or 0 for o in self.objects)

    @property
    def cacheable(self) -> bool:
        return all(o.version for o in self.objects)


class FileSink(Protocol):
    """A local file being written; it enforces the size limit, hashes, and
    reports progress as bytes arrive (see ``_transfer``)."""

    def write(self, data: bytes) -> int: ...


class Source(Protocol):
    """One store, one model path."""

    @property
    def location(self) -> str:
        """Where the artifact is, for messages and the cache (no credentials,
        no query strings)."""

    @property
    def identity(self) -> str:
        """What tells this location apart from any other (endpoint included);
        hashed before it is stored."""

    def list(self) -> Listing: ...

    def download(self, obj: RemoteObject, sink: FileSink) -> None: ...

    def close(self) -> None: ...
