"""Settings of the model puller (``storage`` in the config file)."""

from __future__ import annotations

import pathlib

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = ["StorageSettings"]

MIB = 1024**2
GIB = 1024**3


class StorageSettings(BaseModel):
    """Where models are pulled from and to, and how hard to try."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    config_path: pathlib.Path | None = None
    """ModelMesh Serving's storage-config: a YAML/JSON file mapping storage
    key -> JSON, or a directory with one file per key (a mounted Secret).
    Re-read when it changes. None: no storage keys (local and pvc paths, and
    public http(s) URLs, still work)."""

    pvc_root: pathlib.Path | None = None
    """``pvc://NAME/path`` resolves to ``<pvc_root>/NAME/path`` (ModelMesh
    Serving mounts claims under /pvc_mounts). None: pvc URIs are refused."""

    models_dir: pathlib.Path | None = None
    """Pulled models live in ``<models_dir>/<model id>/``. None: ``models``
    under the instance's data dir."""

    cache_dir: pathlib.Path | None = None
    """The artifact cache. None: ``artifact-cache`` under the data dir."""

    cache_max_bytes: int = Field(default=10 * GIB, ge=0)
    """Bytes the artifact cache may hold; least recently used artifacts go
    first. 0 turns the cache off. An artifact larger than the bound is
    served but not kept."""

    max_model_bytes: int = Field(default=20 * GIB, gt=0)
    """A pull fetching more bytes than this is refused as soon as it crosses
    the limit (and before it starts when the store reports sizes)."""

    retry_attempts: int = Field(default=4, ge=1)
    """Attempts per pull against transient errors (5xx, 429, timeouts,
    connection resets); not found and access denied fail at once."""

    retry_initial_backoff_s: float = Field(default=0.5, ge=0)
    """Delay before the second attempt; it doubles per attempt (with up to
    25% jitter, so many instances do not retry in step)."""

    retry_max_backoff_s: float = Field(default=10.0, ge=0)

    progress_bytes: int = Field(default=8 * MIB, gt=0)
    """A pull larger than this logs (and reports) progress at least every
    this many bytes."""

    request_timeout_s: float = Field(default=60.0, gt=0)
    """Connect/read timeout of one request to a store; a stalled transfer
    fails (and is retried) instead of hanging the load."""

    @model_validator(mode="after")
    def _backoff_order(self) -> StorageSettings:
        if self.retry_max_backoff_s < self.retry_initial_backoff_s:
            raise ValueError("retry_max_backoff_s must be >= retry_initial_backoff_s")
        return self
