"""Provider config -> the client that reads from it."""

from __future__ import annotations

from typing import Protocol

from meshserve.errors import StorageConfigError
from meshserve.storage._providers import (
    AzureConfig,
    GcsConfig,
    HttpConfig,
    ProviderConfig,
    S3Config,
)
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import Source

__all__ = ["SourceFactory", "open_source"]


class SourceFactory(Protocol):
    """Builds a source for one config and model path (injected in tests)."""

    def __call__(
        self, config: ProviderConfig, *, path: str, settings: StorageSettings
    ) -> Source: ...


def open_source(config: ProviderConfig, *, path: str, settings: StorageSettings) -> Source:
    """A source for ``config``. Runs in a worker thread; the client libraries
    are imported on first use, since each takes a noticeable time to import
    and most instances use one of them or none."""
    try:
        return _open_source(config, path=path, settings=settings)
    except ModuleNotFoundError as exc:
        raise StorageConfigError(
            f"storage type '{config.type}' needs the client library '{exc.name}', which is "
            "not installed: pip install 'meshserve[storage]'"
        ) from None


def _open_source(config: ProviderConfig, *, path: str, settings: StorageSettings) -> Source:
    if isinstance(config, S3Config):
        from meshserve.storage._s3 import S3Source

        return S3Source(config, path=path, settings=settings)
    if isinstance(config, GcsConfig):
        from meshserve.storage._gcs import GcsSource

        return GcsSource(config, path=path, settings=settings)
    if isinstance(config, AzureConfig):
        from meshserve.storage._azure import AzureSource

        return AzureSource(config, path=path, settings=settings)
    if isinstance(config, HttpConfig):
        from meshserve.storage._http import HttpSource

        return HttpSource(config, path=path, settings=settings)
    raise StorageConfigError(f"storage type '{config.type}' has no remote source")
