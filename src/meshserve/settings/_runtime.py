"""Settings of the model runtime and the cache of models loaded into it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from meshserve.settings._group import GIB, Group

__all__ = ["CacheSettings", "RuntimeSettings"]


class RuntimeSettings(Group):
    """The built-in runtime: where it runs and what it may load."""

    host: Literal["inprocess", "process", "external"] = "inprocess"
    """``inprocess`` calls the runtime directly (no hop; formats that run no
    user code only). ``process`` runs it as a sandboxed child on a Unix
    socket, which pickle-based formats require. ``external`` drives a runtime
    someone else runs (any ModelMesh SPI runtime) at ``external_address``."""

    external_address: str = ""
    """With ``host: external``: where the runtime listens, ``127.0.0.1:PORT``,
    ``[::1]:PORT`` or ``unix:/PATH`` (loopback only: the SPI has no
    authentication)."""

    external_data_address: str = ""
    """With ``host: external``: where the runtime serves v2 inference
    (ModelInfer, ModelMetadata), under the same rules; empty: at
    ``external_address``. ModelMesh sends inference straight to the model
    server (a ServingRuntime's grpcDataEndpoint), not through an adapter such
    as ``meshserve adapter mlserver``."""

    command: tuple[str, ...] = ()
    """With ``host: external``: a command line the instance runs (and
    restarts when it exits) that serves the SPI at ``external_address``, as a
    ServingRuntime's container does in a pod. Runtime pools set it; empty:
    someone else runs the runtime."""

    command_env: dict[str, str] = Field(default_factory=dict)
    """Environment variables added for ``command`` (a container's ``env``)."""

    capacity_bytes: int = Field(default=1 * GIB, gt=0)
    """Memory the runtime offers to loaded models, in bytes. ModelMesh derives
    it from the container's memory request minus memBufferBytes; standalone
    there is no request to read, so it is set here."""

    allow_pickle: bool = False
    """Serve joblib/pickle artifacts. Pickle runs arbitrary code on load, so it
    is off, and only the out-of-process host accepts it."""

    trusted_types: tuple[str, ...] = ()
    """Extra fully qualified type names a .skops file may contain beyond the
    ones skops and meshserve trust by default."""

    predict_workers: int = Field(default=2, ge=1)
    """Threads running predictions. Few is fast for small models, since the
    GIL serialises most library code (measured here, 2 cores, sklearn: 1
    thread beat 4 by ~10% in throughput); raise it for libraries that release
    the GIL (onnxruntime, xgboost) on machines with more cores."""

    max_batch_size: int = Field(default=32, ge=1)
    """Requests for one model merged into one runtime call at most (adaptive
    batching, built-in runtime only; 1 turns it off). On by default because
    it adds nothing to a request that is alone: one runs at once, and only
    the requests that queued while the model's previous call ran are merged.
    A model's ``max_batch_size`` model key field (from the resource's
    ``serving.meshserve.io/maxBatchSize`` annotation) overrides it. 32
    requests bound the memory and the latency one merged call can take."""

    max_batch_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    """How long a batch that is not full may wait for more requests, in
    milliseconds. 0 (the default) never waits: batches form only from what
    queued while the previous call ran, so a lone request has no added
    latency; a positive value trades that latency for fuller batches."""

    max_loading_concurrency: int = Field(default=1, ge=1)
    """Loads in flight at once (ModelMesh's default is 1)."""

    model_loading_timeout_ms: int = Field(default=90_000, gt=0)
    """A load that takes longer fails (ModelMesh: modelLoadingTimeoutMillis)."""

    default_model_size_bytes: int = Field(default=1_000_000, gt=0)
    """Size assumed for a model before it is measured (ModelMesh's default)."""

    preload_libraries: bool = True
    """Import the format libraries when the runtime starts, in the
    background, so the first load of each format does not wait for them."""

    start_timeout_s: float = Field(default=60.0, gt=0)
    """How long an out-of-process runtime may take to answer READY."""

    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    """First delay before restarting a crashed out-of-process runtime; it
    doubles per consecutive crash up to ``restart_backoff_max_s``."""

    restart_backoff_max_s: float = Field(default=30.0, gt=0)

    stop_grace_s: float = Field(default=5.0, ge=0)
    """SIGTERM-to-SIGKILL grace when stopping an out-of-process runtime."""

    run_as_user: str = "nobody"
    """User (name or uid) an out-of-process runtime becomes when the instance
    runs as root: model artifacts, pickle above all, then run with that
    user's rights and no capabilities. Empty keeps root (not advised). It must
    be able to read the Python installation and the model files."""


class CacheSettings(Group):
    """The instance's cache of loaded models."""

    load_failure_expiry_seconds: float = Field(default=900.0, ge=0)
    """A failed load is not retried before this many seconds (ModelMesh:
    MM_LOAD_FAILURE_EXPIRY_TIME_MS, 15 minutes)."""

    predict_size_timeout_s: float = Field(default=0.5, gt=0)
    """Bound on the runtime's predictModelSize (ModelMesh waits 500 ms)."""

    reload_after_restart: bool = True
    """Reload what was loaded when an out-of-process runtime restarts."""

    eviction_policy: Literal["gdsf", "lru"] = "gdsf"
    """Which copies go first when space is short. ``gdsf`` weighs how often
    a model is used (decayed), what reloading it costs (its measured load
    time) and its size: on a skewed workload it keeps more of what is asked
    for (docs/benchmarks.md, the mesh's hit ratio). ``lru`` is ModelMesh's
    order, least recently used first, exactly."""

    frequency_half_life_seconds: float = Field(default=120.0, gt=0)
    """With ``gdsf``: a model's use count halves every this many seconds, so
    a shift in popularity is followed within a few minutes while a steady
    favourite keeps its lead."""

    frequency_memory_models: int = Field(default=10_000, ge=1)
    """With ``gdsf``: use counts kept for models no longer loaded (so one
    that comes back is not a stranger); past twice this many the least used
    are forgotten. About 100 bytes each."""
