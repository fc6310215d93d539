"""Settings of where registrations live (the store) and where models are
pulled from (storage)."""

from __future__ import annotations

import pathlib

from pydantic import Field, SecretStr, model_validator

from meshserve.settings._group import GIB, MIB, Group

__all__ = ["StorageSettings", "StoreSettings"]


class StoreSettings(Group):
    """Where registrations live."""

    url: str = ""
    """Empty: the embedded SQLite store in the data dir. ``sqlite:///PATH``
    for another file; ``etcd://HOST:PORT[,HOST:PORT...]`` for etcd (what
    instances on several machines share)."""

    etcd_connection_file: pathlib.Path | None = None
    """ModelMesh Serving's etcd connection JSON (the ``etcd_connection`` key
    of the ``model-serving-etcd`` Secret, mounted as a file): ``endpoints``,
    ``root_prefix``, ``userid``/``password``, ``certificate`` (PEM) or
    ``certificate_file``, ``client_certificate_file``/``client_key_file``.
    What it sets wins over the settings below; read once at start."""

    etcd_ca: str = ""
    """PEM file of the CA that signed etcd's certificate; setting it turns on TLS."""

    etcd_cert: str = ""
    """PEM client certificate for etcd (mutual TLS; with ``etcd_key``)."""

    etcd_key: str = ""
    """PEM private key of ``etcd_cert``."""

    etcd_user: str = ""
    """etcd user name (with ``etcd_password``)."""

    etcd_password: SecretStr = SecretStr("")
    """etcd password; never logged or printed."""

    etcd_request_timeout_s: float = Field(default=5.0, gt=0)
    """A single etcd call that takes longer fails as unavailable."""

    etcd_connect_timeout_s: float = Field(default=10.0, gt=0)
    """How long an instance keeps trying to reach etcd at start."""

    root_prefix: str = ""
    """Namespace inside the store, so meshes can share one (ModelMesh's
    root_prefix)."""

    service_name: str = "modelmesh-serving"
    """Keys live under ``<root_prefix>/mm/<service_name>/`` (ModelMesh's
    layout; model-serving-config: inferenceServiceName)."""


class StorageSettings(Group):
    """Where models are pulled from and to, and how hard to try."""

    config_path: pathlib.Path | None = None
    """ModelMesh Serving's storage-config: a YAML/JSON file mapping storage
    key -> JSON, or a directory with one file per key (a mounted Secret).
    Re-read when it changes. None: no storage keys (local and pvc paths, and
    public http(s) URLs, still work)."""

    secret_name: str = "storage-config"
    """The Secret (applied with ``meshserve apply``, sealed in the store) in
    a model's namespace whose keys are storage keys too, as ModelMesh
    Serving's ``storageSecretName``. It is read at every pull that needs
    storage, so a re-applied Secret is used by the next pull; on a key both
    have, it wins over ``config_path``. Empty: no Secret is read."""

    pvc_root: pathlib.Path | None = None
    """``pvc://NAME/path`` resolves to ``<pvc_root>/NAME/path`` (ModelMesh
    Serving mounts claims under /pvc_mounts). None: pvc URIs are refused."""

    pvc_claims: dict[str, pathlib.Path] = Field(default_factory=dict)
    """Claims that are directories of their own: ``pvc://NAME/path``
    resolves to ``<pvc_claims[NAME]>/path`` (before ``pvc_root``), so a
    quick trial serves a local directory by name (``up --pvc-root
    NAME=DIR``). Their directories are allowed roots as the pvc root is."""

    local_roots: tuple[pathlib.Path, ...] | None = None
    """Directories a model given by a plain local path (``models register
    --path``, registerModel's ``path`` with no storage, a Predictor path with
    no storage) must lie under, resolved, besides the pvc root. None: any
    path while auth is off (every caller may do anything then), only the pvc
    root when ``auth.enabled``, so an editor cannot load the server's files."""

    namespace_local_roots: dict[str, tuple[pathlib.Path, ...]] = Field(default_factory=dict)
    """Per namespace, its own directories for local paths, used instead of
    ``local_roots`` and the pvc root for that namespace's models (whether or
    not auth is on), so one namespace cannot load another's files by path."""

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
