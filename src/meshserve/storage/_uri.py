"""Storage URIs as the puller reads them: :mod:`meshserve.resources`'s one
parser (same rules and refusals as resource validation), typed with
:class:`StorageType`."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshserve import resources
from meshserve.storage._providers import StorageType

__all__ = ["StorageRef", "is_storage_uri", "parse_storage_uri"]

is_storage_uri = resources.is_storage_uri


@dataclass(frozen=True, slots=True)
class StorageRef:
    """Where a model lives, as the model key and path carry it."""

    type: StorageType
    path: str
    """The model's path inside the store ('' for an http URL: the URL is the file)."""
    params: dict[str, str] = field(default_factory=dict)
    """``storage_params`` for the model key; always holds ``type``."""


def parse_storage_uri(uri: str) -> StorageRef:
    """Split a storage URI into storage parameters and a path; raises
    InvalidRequestError as :func:`meshserve.resources.parse_storage_uri` does
    (credentials in the URI above all: they belong in the storage config,
    since the model key is stored and shown)."""
    location = resources.parse_storage_uri(uri)
    return StorageRef(StorageType(location.type), location.path, location.params)
