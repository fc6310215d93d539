"""Model storage: ModelMesh Serving's storage-config, storage URIs and model
keys, and the puller that fetches artifacts from S3, GCS, Azure Blob,
HTTP(S) and PVCs into per-model directories, through an on-disk artifact
cache.

    async with Puller(settings=StorageSettings(...), data_dir=data_dir) as puller:
        pulled = await puller.pull(model_id=mid, model_path=path, model_key=key)
        ...  # load pulled.local_path
        await puller.release(mid)

Storage keys come from the storage-config file and from each namespace's
sealed ``storage-config`` Secret (a :class:`SecretReader` the server gives).
Failures are ``meshserve.errors.StorageError`` subclasses whose messages
name the storage key and path and never a credential.
"""

from meshserve.storage._cache import ArtifactCache, CachedArtifact
from meshserve.storage._config import ResolvedStorage, StorageConfig
from meshserve.storage._factory import SourceFactory, open_source
from meshserve.storage._local_roots import LocalRoots
from meshserve.storage._location import check_location
from meshserve.storage._model_key import build_model_key
from meshserve.storage._providers import (
    AzureConfig,
    GcsConfig,
    HttpConfig,
    ProviderConfig,
    PvcConfig,
    S3Config,
    StorageType,
)
from meshserve.storage._puller import PulledModel, Puller
from meshserve.storage._secrets import SecretEntries, SecretReader
from meshserve.storage._settings import StorageSettings
from meshserve.storage._source import (
    FileSink,
    Listing,
    RemoteObject,
    Source,
    TransientStorageError,
)
from meshserve.storage._transfer import ProgressCallback, PullProgress
from meshserve.storage._uri import StorageRef, is_storage_uri, parse_storage_uri

__all__ = [
    "ArtifactCache",
    "AzureConfig",
    "CachedArtifact",
    "FileSink",
    "GcsConfig",
    "HttpConfig",
    "Listing",
    "LocalRoots",
    "ProgressCallback",
    "ProviderConfig",
    "PullProgress",
    "PulledModel",
    "Puller",
    "PvcConfig",
    "RemoteObject",
    "ResolvedStorage",
    "S3Config",
    "SecretEntries",
    "SecretReader",
    "Source",
    "SourceFactory",
    "StorageConfig",
    "StorageRef",
    "StorageSettings",
    "StorageType",
    "TransientStorageError",
    "build_model_key",
    "check_location",
    "is_storage_uri",
    "open_source",
    "parse_storage_uri",
]
