"""The artifact cache: pulled artifacts kept on local disk, bounded by bytes (LRU).

An entry is keyed by where the artifact lives and the versions the store
reported for its files (ETag, generation), so a changed artifact is a new
entry and a reload after eviction is served locally after one metadata call.
Files are hard-linked in and out (copied across filesystems), so a model
directory and the cache share the bytes, and evicting an entry never pulls
the files out from under a loaded model.

Layout: ``<root>/<key>/meta.json`` and ``<root>/<key>/data/<artifact>``.
Methods are thread-safe and blocking (they run in worker threads).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import hashlib
import json
import logging
import os
import pathlib
import shutil
import threading
import uuid
from dataclasses import dataclass

__all__ = ["ArtifactCache", "CachedArtifact", "cache_key", "link_tree", "remove_tree"]

log = logging.getLogger(__name__)

_META = "meta.json"
_DATA = "data"


@dataclass(frozen=True, slots=True)
class CachedArtifact:
    """An artifact the cache holds."""

    key: str
    bytes: int
    digests: dict[str, str]
    """sha256 per file, by path relative to the data directory."""
    location: str


def cache_key(identity: str, versions: list[tuple[str, str, int | None]]) -> str:
    """The entry key for an artifact: its location's identity and, per file,
    (relative path, version, size)."""
    text = json.dumps([identity, sorted(versions, key=lambda v: v[0])], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class ArtifactCache:
    """Artifacts on disk, least recently used evicted past ``max_bytes``."""

    def __init__(self, root: pathlib.Path, *, max_bytes: int) -> None:
        self._root = root
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, CachedArtifact] = collections.OrderedDict()
        self._bytes = 0

    @property
    def root(self) -> pathlib.Path:
        return self._root

    @property
    def enabled(self) -> bool:
        return self._max_bytes > 0

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._bytes

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def keys(self) -> list[str]:
        """Entry keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def open(self) -> None:
        """Read the entries left by earlier runs; drop broken ones and any
        half-written leftovers; evict down to the bound."""
        if not self.enabled:
            return
        self._root.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, CachedArtifact]] = []
        for child in self._root.iterdir():
            if child.name.startswith("."):
                remove_tree(child)
                continue
            meta = child / _META
            try:
                raw = json.loads(meta.read_text())
                entry = CachedArtifact(
                    key=child.name,
                    bytes=int(raw["bytes"]),
                    digests={str(k): str(v) for k, v in raw["digests"].items()},
                    location=str(raw.get("location", "")),
                )
                used = meta.stat().st_mtime
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("artifact cache: dropping unreadable entry %s", child.name)
                remove_tree(child)
                continue
            found.append((used, entry))
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            for _used, entry in sorted(found, key=lambda pair: pair[0]):
                self._entries[entry.key] = entry
                self._bytes += entry.bytes
            doomed = self._evict_locked()
        self._discard(doomed)

    def link_into(self, key: str, dest: pathlib.Path) -> CachedArtifact | None:
        """Link the entry's files into ``dest`` (created), marking it used;
        None when there is no such entry."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            # Linked while locked, so eviction cannot remove files half way.
            try:
                link_tree(self._root / key / _DATA, dest)
            except FileNotFoundError:
                # Removed behind our back: forget it and pull again.
                self._entries.pop(key)
                self._bytes -= entry.bytes
                return None
            self._entries.move_to_end(key)
            with contextlib.suppress(OSError):
                os.utime(self._root / key / _META)
            return entry

    def put(
        self, key: str, src: pathlib.Path, *, bytes_: int, digests: dict[str, str], location: str
    ) -> bool:
        """Keep the files under ``src`` as entry ``key`` (linked, ``src`` is
        unchanged); False if the artifact is larger than the whole cache."""
        if not self.enabled or bytes_ > self._max_bytes:
            return False
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return True
        staging = self._root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        try:
            link_tree(src, staging / _DATA)
            meta = {"bytes": bytes_, "digests": digests, "location": location}
            (staging / _META).write_text(json.dumps(meta))
            with self._lock:
                if key in self._entries:
                    doomed = [staging]
                else:
                    os.rename(staging, self._root / key)
                    entry = CachedArtifact(
                        key=key, bytes=bytes_, digests=dict(digests), location=location
                    )
                    self._entries[key] = entry
                    self._bytes += bytes_
                    doomed = self._evict_locked()
        except OSError as exc:
            log.warning("artifact cache: could not keep %s: %s", location, exc)
            remove_tree(staging)
            return False
        self._discard(doomed)
        return True

    def _evict_locked(self) -> list[pathlib.Path]:
        """Drop least recently used entries until the rest fit the bound;
        returns their renamed directories, removed after the lock is let go."""
        doomed: list[pathlib.Path] = []
        while self._entries and self._bytes > self._max_bytes:
            key, entry = self._entries.popitem(last=False)
            self._bytes -= entry.bytes
            trash = self._root / f".trash-{key}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(self._root / key, trash)
            except FileNotFoundError:
                continue
            doomed.append(trash)
            log.info("artifact cache: evicted %s (%d bytes)", entry.location, entry.bytes)
        return doomed

    @staticmethod
    def _discard(paths: list[pathlib.Path]) -> None:
        for path in paths:
            remove_tree(path)


def link_tree(src: pathlib.Path, dest: pathlib.Path) -> None:
    """Recreate the tree under ``src`` at ``dest`` with hard links (copies
    where links cannot be made, e.g. across filesystems)."""
    dest.mkdir(parents=True, exist_ok=True)
    if not src.is_dir():
        raise FileNotFoundError(src)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = pathlib.Path(dirpath).relative_to(src)
        for name in dirnames:
            (dest / rel / name).mkdir(exist_ok=True)
        for name in filenames:
            source, target = pathlib.Path(dirpath, name), dest / rel / name
            try:
                os.link(source, target, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    raise
                shutil.copy2(source, target, follow_symlinks=False)


def remove_tree(path: pathlib.Path) -> None:
    """Remove a file or directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
