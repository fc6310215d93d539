"""What S3, GCS and Azure Blob sources share: a model path in a bucket (or
container) names one object, or every object under it as a directory tree.

Subclasses say how to look up one object and how to list a prefix, and how
their client's errors translate; the listing rules (one object first, then
the prefix; directory markers skipped; relative paths checked) live here.
"""

from __future__ import annotations

import abc
import contextlib
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from meshserve.errors import ArtifactNotFoundError, StorageError
from meshserve.storage._paths import safe_relative_path
from meshserve.storage._source import FileSink, Listing, RemoteObject

__all__ = ["BucketSource", "StoredObject"]


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    version: str
    """The etag or generation: what a download must still match."""


class BucketSource(abc.ABC):
    """One model path in one bucket of an object store."""

    def __init__(self, *, path: str, bucket: str, location: str, identity: str) -> None:
        self._path = path
        self._bucket_name = bucket
        self._location = location
        self._identity = identity

    @property
    def location(self) -> str:
        return self._location

    @property
    def identity(self) -> str:
        return self._identity

    @abc.abstractmethod
    def _head(self, key: str) -> StoredObject | None:
        """The object at ``key``, or None if there is none (it may be a prefix)."""

    @abc.abstractmethod
    def _under(self, prefix: str) -> Iterable[StoredObject]:
        """Every object whose key starts with ``prefix``."""

    @abc.abstractmethod
    def _download(self, obj: RemoteObject, sink: FileSink) -> None:
        """Write the object, refusing it if its version changed since listing."""

    @abc.abstractmethod
    def _translate(self, exc: Exception) -> Exception:
        """The client library's error -> the domain's (codes, never input)."""

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            raise self._translate(exc) from None

    def list(self) -> Listing:
        path = self._path.rstrip("/")
        name = posixpath.basename(path) or self._bucket_name
        with self._translated():
            if path and not self._path.endswith("/"):
                found = self._head(path)
                if found is not None:
                    rel = safe_relative_path(name, where=self._location)
                    obj = RemoteObject(
                        name=found.key, rel_path=rel, size=found.size, version=found.version
                    )
                    return Listing(name=name, objects=(obj,), is_directory=False)
            prefix = f"{path}/" if path else ""
            objects = [
                RemoteObject(
                    name=item.key,
                    rel_path=safe_relative_path(
                        f"{name}/{item.key[len(prefix) :]}", where=self._location
                    ),
                    size=item.size,
                    version=item.version,
                )
                for item in self._under(prefix)
                if not item.key.endswith("/")  # a "directory" marker object
            ]
        if not objects:
            raise ArtifactNotFoundError("no object or prefix at that path")
        return Listing(name=name, objects=tuple(objects), is_directory=True)

    def download(self, obj: RemoteObject, sink: FileSink) -> None:
        with self._translated():
            self._download(obj, sink)
