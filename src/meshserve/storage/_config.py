"""ModelMesh Serving's storage-config: storage key -> provider config.

The source is a mapping of storage key -> JSON (a Kubernetes Secret's data),
read from a YAML/JSON file or from a directory holding one file per key (how
a mounted Secret looks). It is re-read when it changes, checked on access.
A namespace's sealed ``storage-config`` Secret is laid over it for a pull
(:meth:`StorageConfig.overlaid`); on a key both have, the Secret wins.

Lookup follows ModelMesh's puller: the model's storage key; without one,
``default_<type>`` when the parameters name a type, else ``default``; with
no such entry either, the parameters alone (enough for pvc and public http).
``storage_params`` then override the entry's fields.
"""

from __future__ import annotations

import json
import logging
import pathlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pydantic
import yaml

from meshserve.errors import StorageConfigError
from meshserve.storage._providers import CREDENTIAL_FIELDS, ProviderConfig, StorageType
from meshserve.storage._secrets import SecretEntries

__all__ = ["ResolvedStorage", "StorageConfig"]

log = logging.getLogger(__name__)

_ADAPTER: pydantic.TypeAdapter[ProviderConfig] = pydantic.TypeAdapter(ProviderConfig)

# Parameters meshserve reads itself; they are not provider fields.
_PULL_PARAMS = frozenset({"sha256"})

_DEFAULT_KEY = "default"


@dataclass(frozen=True, slots=True)
class ResolvedStorage:
    """The config a pull uses: which entry it came from, merged with the
    model's parameters."""

    key: str
    """The storage-config entry used ('' when the parameters alone sufficed);
    named in error messages."""
    config: ProviderConfig


@dataclass(frozen=True, slots=True)
class _Invalid:
    """An entry that did not parse; the other keys keep working."""

    reason: str


_Entry = dict[str, Any] | _Invalid
_Signature = tuple[tuple[str, int, int], ...]


class StorageConfig:
    """Storage keys and their provider configs, kept in step with the source."""

    def __init__(self, entries: Mapping[str, Any], *, path: pathlib.Path | None = None) -> None:
        """Prefer ``from_mapping`` or ``from_path``."""
        self._lock = threading.Lock()
        self._path = path
        self._signature: _Signature | None = None
        self._entries: dict[str, _Entry] = _parse_entries(entries)
        self._sources: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, entries: Mapping[str, Any]) -> StorageConfig:
        """A fixed config; values are JSON strings (as in a Secret) or mappings."""
        return cls(entries)

    @classmethod
    def from_path(cls, path: pathlib.Path) -> StorageConfig:
        """A config read from ``path`` (file or directory) and re-read when it
        changes. A missing path reads as empty, so it may appear later."""
        config = cls({}, path=path)
        config._refresh()
        return config

    @classmethod
    def empty(cls) -> StorageConfig:
        return cls({})

    def overlaid(self, secret: SecretEntries) -> StorageConfig:
        """A fixed config for one pull: this one's entries (as they are now)
        with the Secret's over them. Keys the Secret could not unseal fail,
        with the reason, only for the models that use them."""
        self._refresh()
        with self._lock:
            entries = dict(self._entries)
        for key, entry in _parse_entries(secret.values, origin=secret.origin).items():
            if isinstance(entry, _Invalid):
                entry = _Invalid(f"{entry.reason} (in {secret.origin})")
            entries[key] = entry
        entries.update({key: _Invalid(reason) for key, reason in secret.unreadable.items()})
        overlay = StorageConfig({})
        overlay._entries = entries
        overlay._sources = (*self._describe_sources(), secret.origin)
        return overlay

    def _describe_sources(self) -> tuple[str, ...]:
        return self._sources or ((f"storage config {self._path}",) if self._path else ())

    def __repr__(self) -> str:
        source = f" from {self._path}" if self._path is not None else ""
        return f"StorageConfig(keys={sorted(self.keys())!r}{source})"

    def keys(self) -> list[str]:
        self._refresh()
        with self._lock:
            return list(self._entries)

    def get(self, key: str) -> ProviderConfig:
        """The typed config of one entry, without overrides."""
        return self.resolve(storage_key=key, params={}).config

    def resolve(self, *, storage_key: str | None, params: Mapping[str, str]) -> ResolvedStorage:
        """The config for a model: its entry (see the module doc) with
        ``params`` applied over it."""
        self._refresh()
        for name in params:
            if name in CREDENTIAL_FIELDS:
                raise StorageConfigError(
                    f"storage parameter '{name}' is a credential: put it in the storage "
                    "config and name its key, so it never travels in the model key"
                )
        wanted = params.get("type") or None
        with self._lock:
            if storage_key:
                if storage_key not in self._entries:
                    sources = self._describe_sources()
                    searched = f"; searched {'; '.join(sources)}" if sources else ""
                    raise StorageConfigError(
                        f"no storage config for storage key '{storage_key}'{searched}"
                    )
                key = storage_key
            else:
                key = _default_key(self._entries, wanted)
            entry = self._entries.get(key, {}) if key else {}
        if isinstance(entry, _Invalid):
            raise StorageConfigError(f"storage config for key '{key}' is invalid: {entry.reason}")
        merged = dict(entry)
        merged.update({k: v for k, v in params.items() if k not in _PULL_PARAMS})
        if not merged.get("type"):
            where = f"storage key '{key}'" if key else "the model's storage parameters"
            raise StorageConfigError(f"{where} name no storage type (s3, gcs, azure, http, pvc)")
        return ResolvedStorage(key=key, config=_typed(merged, key=key))

    def _refresh(self) -> None:
        if self._path is None:
            return
        signature = _signature(self._path)
        with self._lock:
            if signature == self._signature:
                return
        try:
            raw = _read(self._path)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            # Keep serving the last good config: a Secret being rewritten or a
            # half-saved file must not fail every load until it settles.
            log.warning(
                "storage config %s unreadable, keeping the previous one: %s", self._path, exc
            )
            return
        entries = _parse_entries(raw)
        with self._lock:
            self._entries = entries
            self._signature = signature
        log.info("storage config read from %s: keys %s", self._path, sorted(entries))


def _default_key(entries: Mapping[str, _Entry], wanted: str | None) -> str:
    """The entry serving a model with no storage key ('' if none does)."""
    if wanted and f"{_DEFAULT_KEY}_{wanted}" in entries:
        return f"{_DEFAULT_KEY}_{wanted}"
    entry = entries.get(_DEFAULT_KEY)
    if entry is None:
        return ""
    # `default` serves a typed request only if it is of that type.
    if wanted and isinstance(entry, dict) and entry.get("type") != wanted:
        return ""
    return _DEFAULT_KEY


def _typed(merged: dict[str, Any], *, key: str) -> ProviderConfig:
    try:
        return _ADAPTER.validate_python(merged)
    except pydantic.ValidationError as exc:
        # Name the fields only: pydantic's message quotes the input values.
        problems = ", ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'type'}: {err['msg']}"
            for err in exc.errors()
        )
        where = f"storage key '{key}'" if key else "the model's storage parameters"
        raise StorageConfigError(f"invalid storage config for {where}: {problems}") from None


def _parse_entries(raw: Mapping[str, Any], *, origin: str = "storage config") -> dict[str, _Entry]:
    entries: dict[str, _Entry] = {}
    for key, value in raw.items():
        try:
            parsed = json.loads(value) if isinstance(value, str | bytes) else value
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = (
                f" (line {exc.lineno}, column {exc.colno})"
                if isinstance(exc, json.JSONDecodeError)
                else ""
            )
            entries[str(key)] = _Invalid(f"not valid JSON{where}")
            log.warning("%s key '%s' is not valid JSON", origin, key)
            continue
        if not isinstance(parsed, dict):
            entries[str(key)] = _Invalid("not a JSON object")
            log.warning("%s key '%s' is not a JSON object", origin, key)
            continue
        kind = parsed.get("type")
        if kind not in {t.value for t in StorageType}:
            entries[str(key)] = _Invalid(f"unknown storage type {kind!r}")
            log.warning("%s key '%s' has unknown type %r", origin, key, kind)
            continue
        entries[str(key)] = {str(k): v for k, v in parsed.items()}
    return entries


def _signature(path: pathlib.Path) -> _Signature:
    """What changes when the source changes: name, mtime and size of the file
    or of each file in the directory (following the symlinks a mounted Secret
    swaps atomically)."""
    try:
        if not path.is_dir():
            st = path.stat()
            return ((path.name, st.st_mtime_ns, st.st_size),)
        parts = []
        for child in sorted(path.iterdir()):
            if child.name.startswith("."):
                continue
            st = child.stat()
            parts.append((child.name, st.st_mtime_ns, st.st_size))
        st = path.stat()
        parts.append(("", st.st_mtime_ns, 0))
        return tuple(parts)
    except FileNotFoundError:
        return ()


def _read(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    if path.is_dir():
        # One file per key, as a mounted Secret; its ..data and ..<timestamp>
        # entries are hidden.
        return {
            child.name: child.read_text()
            for child in sorted(path.iterdir())
            if not child.name.startswith(".") and child.is_file()
        }
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError("expected a mapping of storage key -> JSON at the top level")
    # A Kubernetes Secret manifest: its stringData (data is base64 and not read).
    if "stringData" in loaded and isinstance(loaded["stringData"], dict):
        loaded = loaded["stringData"]
    return {str(k): v for k, v in loaded.items()}
