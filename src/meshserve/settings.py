"""meshserve's settings: one typed object, built once and passed in.

Sources, lowest to highest precedence: defaults (ModelMesh Serving's where it
has one), a YAML config file, ``MESHSERVE_*`` environment variables (``__``
between nested names, e.g. ``MESHSERVE_RUNTIME__CAPACITY_BYTES``), then
command-line flags. Config files may spell keys in ModelMesh's camelCase
(``capacityBytes``) or in snake_case, or be ModelMesh Serving's
``model-serving-config`` (see ``meshserve._serving_config``), recognised by
its keys. ``load_settings_with_sources`` also says where each value came from.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from meshserve._provenance import Layer, Source, SourceKind, env_variable, setting_paths, source_of
from meshserve._serving_config import is_serving_config, read_serving_config

__all__ = [
    "AuthSettings",
    "CacheSettings",
    "ControlSettings",
    "LimitsSettings",
    "MeshSettings",
    "MetricsSettings",
    "RuntimeSettings",
    "SecuritySettings",
    "ServerSettings",
    "Settings",
    "Source",
    "SourceKind",
    "StorageSettings",
    "StoreSettings",
    "TlsSettings",
    "load_settings",
    "load_settings_with_sources",
    "setting_name",
]

_log = logging.getLogger(__name__)

GIB = 1024**3
MIB = 1024**2


class _Group(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RuntimeSettings(_Group):
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


class ServerSettings(_Group):
    """The instance's front ends."""

    host: str = "127.0.0.1"
    """Address the gRPC and REST ports bind to. Loopback by default: opening
    a model server to the network is a decision, not a default."""

    grpc_port: int = Field(default=8033, ge=0, le=65535)
    """Inference + management gRPC port (ModelMesh's 8033); 0 picks one."""

    rest_port: int = Field(default=8008, ge=0, le=65535)
    """v2 REST port (ModelMesh Serving's REST proxy uses 8008); 0 picks one."""

    rest_enabled: bool = True
    """Serve REST (model-serving-config: restProxy.enabled)."""

    grpc_max_message_size_bytes: int = Field(default=16 * MIB, gt=0)
    """Largest request or response accepted, gRPC and REST alike
    (model-serving-config: grpcMaxMessageSizeBytes)."""

    grace_period_s: float = Field(default=5.0, ge=0)
    """How long in-flight requests may finish at shutdown."""

    share_ports: bool = False
    """Let several instances on one machine listen on the same gRPC and REST
    ports (SO_REUSEPORT; ``meshserve up --instances N`` sets it). Off
    otherwise, so that a second server on a taken port fails loudly instead
    of silently taking half the traffic. An instance sharing the gRPC port
    also serves it on a free port of its own, listed in endpoints.json."""

    max_inflight_decode_bytes: int = Field(default=64 * MIB, ge=0)
    """Bytes of inference request bodies (REST and gRPC ModelInfer) one
    instance holds and decodes at once. A request that would go over is
    refused with 429 / RESOURCE_EXHAUSTED (and counted as
    ``meshserve_limit_rejected_total{limit="inflight_bytes"}``), except when
    it is the only one: then it is served whatever its size. Decoding a JSON
    body takes several times its size (8 bodies of 15 MB took 640 MB), so
    this bounds the instance's memory under a flood of large requests. The
    default lets four requests of the largest size
    (``grpcMaxMessageSizeBytes``) in at once. 0: unlimited."""

    offload_decode_bytes: int = Field(default=256 * 1024, ge=0)
    """REST bodies larger than this are decoded (and their replies encoded)
    on a worker thread, so that a large body does not stall every other
    request on the event loop (15 MB of JSON takes ~0.25 s to decode).
    Smaller ones are decoded inline, where a thread hop would cost more
    than the decoding. 0: every body goes to a thread."""

    header_timeout_s: float = Field(default=10.0, gt=0)
    """A client must send a request's headers within this many seconds of
    connecting (or of starting the request, on a kept-alive connection);
    otherwise the connection is closed (REST answers 408 when part of a
    request came). On gRPC it bounds the connection handshake (TLS and the
    HTTP/2 preface). Headers fit in one packet, so 10 s only cuts clients
    that hold connections open on purpose (slowloris)."""

    body_timeout_s: float = Field(default=60.0, gt=0)
    """A REST request body must arrive in full within this many seconds of
    its headers; otherwise the server answers 408 and closes the connection.
    60 s is 16 MiB (the largest body) at ~280 KB/s. (gRPC messages have no
    such bound; ``grpcMaxConnectionAgeS`` bounds them.)"""

    idle_timeout_s: int = Field(default=5, ge=1)
    """A kept-alive REST connection with no request for this many seconds is
    closed (uvicorn's default; it keeps no state, so clients reconnect
    cheaply)."""

    max_connections_per_client: int = Field(default=128, ge=0)
    """Open REST connections one client IP address may have; beyond it a new
    connection is answered 503 and closed. Counted per instance. A client's
    connection pool rarely needs more than tens. 0: unlimited. (gRPC
    multiplexes calls on one connection: see ``grpcMaxStreamsPerConnection``.)"""

    grpc_max_connection_idle_s: float = Field(default=300.0, ge=0)
    """A gRPC connection with no call for this long is closed (clients
    reconnect on their next call). 0: never."""

    grpc_max_connection_age_s: float = Field(default=3600.0, ge=0)
    """A gRPC connection older than this is asked to go away (clients
    reconnect transparently), and closed ``grpcMaxConnectionAgeGraceS``
    later: the bound on a call whose message never finishes arriving. 0:
    never."""

    grpc_max_connection_age_grace_s: float = Field(default=300.0, ge=0)
    """Calls in flight on a connection past its age get this long to finish.
    Longer than a model load (``modelLoadingTimeoutMillis``, 90 s) plus an
    inference, so that no legitimate call is cut."""

    grpc_keepalive_time_s: float = Field(default=120.0, gt=0)
    """The server pings a gRPC connection that has sent nothing for this
    long, to find clients that vanished while a call was in flight."""

    grpc_keepalive_timeout_s: float = Field(default=20.0, gt=0)
    """A connection that does not answer the ping within this is closed."""

    grpc_max_streams_per_connection: int = Field(default=128, ge=1)
    """Calls one gRPC connection may have in flight at once (HTTP/2
    ``SETTINGS_MAX_CONCURRENT_STREAMS``); a client's further calls wait on
    its side."""


class CacheSettings(_Group):
    """The instance's cache of loaded models."""

    load_failure_expiry_seconds: float = Field(default=900.0, ge=0)
    """A failed load is not retried before this many seconds (ModelMesh:
    MM_LOAD_FAILURE_EXPIRY_TIME_MS, 15 minutes)."""

    predict_size_timeout_s: float = Field(default=0.5, gt=0)
    """Bound on the runtime's predictModelSize (ModelMesh waits 500 ms)."""

    reload_after_restart: bool = True
    """Reload what was loaded when an out-of-process runtime restarts."""


class StoreSettings(_Group):
    """Where registrations live."""

    url: str = ""
    """Empty: the embedded SQLite store in the data dir. ``sqlite:///PATH``
    for another file; ``etcd://HOST:PORT[,HOST:PORT...]`` for etcd (what
    instances on several machines share)."""

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


class StorageSettings(_Group):
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


ClientAuth = Literal["none", "optional", "require"]


class TlsSettings(_Group):
    """Where a server's (or client's) certificate, key and CA live.

    ModelMesh Serving takes these from the Secret named by ``tls.secretName``
    (keys ``tls.crt``, ``tls.key``, ``ca.crt``) and ``tls.clientAuth``; here
    they are files, so a mounted Secret works as is.
    """

    cert_file: pathlib.Path
    """PEM certificate chain, leaf first."""

    key_file: pathlib.Path
    """PEM private key of the leaf certificate (PKCS8, ``BEGIN PRIVATE KEY``;
    the traditional RSA/EC forms load too)."""

    ca_file: pathlib.Path | None = None
    """PEM CA bundle that peers' certificates must chain to. Required when
    clients are verified (``client_auth`` other than ``none``) and for mesh
    links, which are always mutual."""

    client_auth: ClientAuth = "none"
    """``require``: refuse clients without a certificate signed by the CA.
    ``optional``: verify a certificate when one is presented, serve clients
    without one. ``none``: do not ask. (ModelMesh: ``tls.clientAuth``.)
    gRPC in Python cannot ask for an optional certificate, so under
    ``optional`` the gRPC port does not request one; REST does."""

    reload_interval_s: float = Field(default=5.0, ge=0)
    """How often, at most, the files are checked for a change (one ``stat``
    per file, at a handshake). 0 checks at every handshake."""

    @model_validator(mode="after")
    def _client_auth_needs_ca(self) -> TlsSettings:
        if self.client_auth != "none" and self.ca_file is None:
            raise ValueError(f"client_auth={self.client_auth!r} needs ca_file to verify clients")
        return self

    def for_mesh_links(self) -> TlsSettings:
        """The same files with client certificates required: instance-to-
        instance links are mutual TLS whenever TLS is on."""
        if self.ca_file is None:
            raise ValueError("mesh links are mutual TLS and need ca_file")
        return self.model_copy(update={"client_auth": "require"})


class AuthSettings(_Group):
    """Authentication and authorisation of the gRPC and REST front ends."""

    enabled: bool = False
    """Require a credential on every call except health probes. Off by
    default like ModelMesh, which has no application-level authentication;
    turn it on wherever the ports are reachable by more than trusted callers."""

    tokens_file: pathlib.Path | None = None
    """YAML file of principals (see ``meshserve.security._tokens``); required
    when enabled, since it also gives mTLS identities their roles."""

    mtls_identities: dict[str, str] = Field(default_factory=dict)
    """Client certificate subject CN -> principal name in the tokens file.
    Used only for certificates the TLS layer verified, and only when the
    call carries no bearer token."""

    reload_interval_s: float = Field(default=5.0, ge=0)
    """At most this often a call checks whether the tokens file changed; a
    revoked token stops working within this many seconds."""

    @model_validator(mode="after")
    def _tokens_file_when_enabled(self) -> AuthSettings:
        if self.enabled and self.tokens_file is None:
            raise ValueError("auth.enabled needs auth.tokensFile (the principals and their roles)")
        return self


class SecuritySettings(_Group):
    """Secrets at rest: the key that seals Secret values in the store."""

    sealing_key_file: pathlib.Path | None = None
    """File holding the 256-bit sealing key as hex or base64 of 32 bytes;
    it must be mode 0600 or stricter. None: ``sealing_key``, else
    ``<data_dir>/sealing.key`` (``meshserve up`` makes it once). Every
    process that applies or reads Secrets of one store needs the same key."""

    sealing_key: SecretStr = SecretStr("")
    """The sealing key itself (hex or base64), usually from
    ``MESHSERVE_SECURITY__SEALING_KEY``; set this or ``sealing_key_file``,
    not both. Never logged or printed."""


class LimitsSettings(_Group):
    """What one caller or one namespace may use. 0 is unlimited throughout,
    like ModelMesh, which has none of these limits."""

    requests_per_second: float = Field(default=0.0, ge=0)
    """Sustained requests per second one caller may send to the gRPC and REST
    ports together (a token bucket per caller, per instance). The caller is
    the principal when auth is enabled, otherwise the client's IP address.
    Health probes are not counted. 0: unlimited."""

    request_burst: int = Field(default=0, ge=0)
    """Requests a caller may send at once after being idle (the bucket's
    size). 0: one second's worth of ``requests_per_second``, at least 1."""

    models_per_namespace: int = Field(default=0, ge=0)
    """Models one namespace may have registered (the namespace of
    ``team-a/fraud`` is ``team-a``; other ids are in ``default``). 0: unlimited."""

    namespace_max_bytes: int = Field(default=0, ge=0)
    """Bytes the models of one namespace may take together, counting each
    model's size as last measured when loaded (0 for a model never loaded). A
    load that would go over is refused. 0: unlimited."""


class MeshSettings(_Group):
    """How an instance takes part in the mesh: membership, routing, copies."""

    instance_id: str = ""
    """This instance's id in the mesh; empty: ``<hostname>-<pid>``."""

    internal_host: str = "127.0.0.1"
    """Address of the internal port other instances forward requests to."""

    internal_port: int = Field(default=0, ge=0, le=65535)
    """Internal gRPC port (0 picks a free one; it is published in the store)."""

    secret_file: pathlib.Path | None = None
    """File holding the mesh secret (at least 32 characters, e.g. ``openssl
    rand -hex 32``; mode 0600 or stricter): the internal port serves only
    calls that prove they hold it, and every instance of a mesh needs the
    same one. None: ``meshserve up`` makes ``<data_dir>/mesh.secret`` (with
    its own store); other instances share one kept in the store, created by
    the first, as readable as the store is."""

    labels: tuple[str, ...] = ()
    """Extra placement labels this instance offers (``rt:<runtime>`` and
    ``mt:<format>`` for its runtime's formats are always there)."""

    runtime_name: str = "meshserve-builtin"
    """The runtime's name, offered as the ``rt:<name>`` label."""

    lease_ttl_s: float = Field(default=10.0, gt=0)
    """The instance's lease: its record and copies vanish this long after it
    stops refreshing (a SIGKILL, a lost machine)."""

    publish_interval_s: float = Field(default=1.0, gt=0)
    """Most frequent refresh of the instance record (capacity, used, rates)."""

    max_attempts: int = Field(default=8, ge=1)
    """Instances a request may try (ModelMesh: 8 iterations), which bounds
    forwarding hops too."""

    forward_timeout_s: float = Field(default=120.0, gt=0)
    """Deadline of a request forwarded to another instance (it may load first)."""

    peer_retry_s: float = Field(default=5.0, gt=0)
    """An instance that could not be reached is skipped this long."""

    rate_check_interval_s: float = Field(default=10.0, gt=0)
    """How often request rates are compared with ``scaleup_rpm_threshold``."""

    scaleup_rpm_threshold: int = Field(default=2000, gt=0)
    """Requests per minute per copy above which a model gets another copy.
    The store key ``config/scaleup_rpm_threshold`` overrides it at run time."""

    second_copy_min_age_s: float = Field(default=420.0, ge=0)
    """A single-copy model used again between this many seconds after its
    previous use ..."""

    second_copy_max_age_s: float = Field(default=2400.0, ge=0)
    """... and this many seconds after its previous use gets a second copy."""

    janitor_interval_s: float = Field(default=360.0, gt=0)
    """Every instance reconciles its cache with the registry this often."""

    last_use_publish_interval_s: float = Field(default=10.0, gt=0)
    """How often an instance writes the last use of its models into their
    records, where a minute or more newer (the reaper reloads lost models
    most recently used first, and ``models list`` shows the mesh's last use
    from them). One write per used model per minute at most, so short."""

    reaper_interval_s: float = Field(default=420.0, gt=0)
    """The leader reloads models that lost their last copy this often."""

    scale_down_free_fraction: float = Field(default=0.05, ge=0, le=1)
    """Extra copies are removed only when the mesh has at most this much free."""

    drain_deadline_s: float = Field(default=30.0, ge=0)
    """On SIGTERM: time allowed to load this instance's models elsewhere."""

    drain_recent_s: float = Field(default=3600.0, ge=0)
    """Models used this recently are loaded elsewhere before the instance exits."""

    vmodel_retire_delay_s: float = Field(default=2.0, ge=0)
    """After a vmodel moves to its new target, how long the old (auto-delete)
    model stays before it is deleted: requests that resolved the vmodel just
    before the switch, here or on an instance whose view lags, still find it."""


class MetricsSettings(_Group):
    """Prometheus metrics (model-serving-config: metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    """Address the metrics port binds to."""

    port: int = Field(default=2112, ge=0, le=65535)
    """ModelMesh's metrics port; 0 picks one."""


class ControlSettings(_Group):
    """Runtime pools of ``meshserve up`` (model-serving-config: podsPerRuntime,
    scaleToZero)."""

    pods_per_runtime: int = Field(default=2, ge=1)
    """Instances started for each enabled multiModel ServingRuntime, unless
    the runtime sets ``replicas`` (model-serving-config: podsPerRuntime)."""

    scale_to_zero_enabled: bool = True
    """Stop a runtime's pool when no resource uses it (scaleToZero.enabled)."""

    scale_to_zero_grace_period_s: float = Field(default=60.0, ge=0)
    """How long a runtime's pool stays up after its last resource goes, so a
    delete and re-create does not restart it (scaleToZero.gracePeriodSeconds)."""

    pickle_namespaces: tuple[str, ...] = ("*",)
    """Namespaces (``fnmatch`` patterns) whose resources may use the shipped
    runtimes that load pickle artifacts (``meshserve-pickle``,
    ``meshserve-mlserver``): pickle runs the artifact's code. Naming such a
    runtime is the per-model opt-in; this narrows who may opt in."""

    controller_enabled: bool = True
    """Run for the controller (one instance of the mesh holds it at a time).
    Pool instances started by ``meshserve up`` do not: the supervisor that
    starts pools must be the one that reconciles."""

    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    """First delay before ``up`` restarts an instance process that exited;
    it doubles per failure up to ``restart_backoff_max_s``."""

    restart_backoff_max_s: float = Field(default=30.0, gt=0)

    mlserver_executable: str = "mlserver"
    """The ``mlserver`` command the shipped ``meshserve-mlserver`` runtime
    runs (a path, or a name looked up on PATH). MLServer needs a Python
    environment of its own: see docs/model-formats.md."""

    allowed_runtime_images: tuple[str, ...] = ()
    """Patterns (``fnmatch``: ``*``, ``?``, ``[...]``) that a ServingRuntime's
    container images and commands must match to be used. Empty: none, so
    only the built-in runtime serves until an operator allows more; a
    refused runtime's status says which image or command did not match."""


class Settings(BaseSettings):
    """All of meshserve's settings, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="MESHSERVE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: pathlib.Path = pathlib.Path(".meshserve")
    """Where the embedded store, logs and endpoints.json live."""

    server: ServerSettings = ServerSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    cache: CacheSettings = CacheSettings()
    store: StoreSettings = StoreSettings()
    mesh: MeshSettings = MeshSettings()
    storage: StorageSettings = StorageSettings()
    metrics: MetricsSettings = MetricsSettings()
    auth: AuthSettings = AuthSettings()
    control: ControlSettings = ControlSettings()
    limits: LimitsSettings = LimitsSettings()
    security: SecuritySettings = SecuritySettings()
    tls: TlsSettings | None = None
    """TLS on the gRPC, REST and internal ports (instance-to-instance links
    are then mutual TLS). None: plaintext, loopback-only by default."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the config file merged with flags by load_settings) wins over env.
        return (init_settings, env_settings)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    *, config_file: pathlib.Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the settings from a YAML file, the environment and flag overrides.

    ``overrides`` holds flag values as nested dicts (``{"runtime":
    {"capacity_bytes": 1024}}``); entries whose value is None are ignored, so
    unset flags never mask the file or the environment.
    """
    settings, _ = load_settings_with_sources(config_file=config_file, overrides=overrides)
    return settings


def load_settings_with_sources(
    *, config_file: pathlib.Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Settings, dict[str, Source]]:
    """``load_settings``, and where each setting's value came from, by
    dotted camelCase name (``server.grpcPort``; see ``setting_name``).

    Keys of a model-serving-config file that meshserve does not act on are
    logged as warnings (logger ``meshserve.settings``).
    """
    layers = [
        *_file_layers(config_file),
        Layer(
            "env",
            Settings().model_dump(exclude_unset=True),
            lambda path: env_variable(path, os.environ, prefix=_ENV_PREFIX, delimiter="__"),
        ),
        Layer("flag", _drop_none(overrides or {})),
    ]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, dict(layer.values))
    settings = Settings(**merged)
    sources = {setting_name(path): source_of(path, layers) for path in setting_paths(Settings)}
    return settings, sources


def setting_name(path: tuple[str, ...]) -> str:
    """A setting's dotted camelCase name, as the README and config files
    spell it: ``("runtime", "model_loading_timeout_ms")`` ->
    ``runtime.modelLoadingTimeoutMillis``."""
    return ".".join(_CAMEL.get(part, to_camel(part)) for part in path)


_ENV_PREFIX = "MESHSERVE_"


def _file_layers(config_file: pathlib.Path | None) -> list[Layer]:
    if config_file is None:
        return []
    loaded = yaml.safe_load(config_file.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{config_file}: expected a mapping at the top level")
    if not is_serving_config(loaded, meshserve_keys=_TOP_LEVEL_KEYS):
        _refuse_mixed_shapes(config_file, loaded)
        return [Layer("file", _snake_keys(loaded))]
    serving = read_serving_config(loaded, base_dir=config_file.parent.absolute())
    for warning in serving.warnings():
        _log.warning("%s: %s", config_file, warning)
    origins = serving.origins
    return [Layer("file", serving.values, lambda path: origins.get(path, ""))]


def _refuse_mixed_shapes(config_file: pathlib.Path, loaded: dict[str, Any]) -> None:
    # Read as meshserve's, the model-serving-config keys would each be refused
    # as an unknown setting, which hides what went wrong.
    theirs = sorted(str(key) for key in loaded if str(key).lower() not in _TOP_LEVEL_KEYS)
    theirs = [key for key in theirs if is_serving_config({key: None}, meshserve_keys=set())]
    if theirs:
        ours = sorted(str(key) for key in loaded if str(key).lower() in _TOP_LEVEL_KEYS)
        raise ValueError(
            f"{config_file}: mixes meshserve settings ({', '.join(ours)}) with "
            f"model-serving-config keys ({', '.join(theirs)}); use one shape"
        )


def _snake_keys(values: dict[str, Any], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """Config files may use ModelMesh's camelCase; merging needs one spelling.

    Only setting names are respelled: the keys of a mapping-valued setting
    (``auth.mtlsIdentities``' certificate names, ``runtime.commandEnv``'s
    variables) are data and stay as written."""
    fields = (model or Settings).model_fields
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = _ALIASES.get(key, to_snake(key))
        group = _group_of(fields[name].annotation) if name in fields else None
        out[name] = _snake_keys(value, group) if isinstance(value, dict) and group else value
    return out


def _group_of(annotation: Any) -> type[BaseModel] | None:
    """The settings group a field holds (``TlsSettings | None`` too), if any."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# camelCase names that do not convert mechanically to the field name.
_ALIASES = {"modelLoadingTimeoutMillis": "model_loading_timeout_ms"}
_CAMEL = {snake: camel for camel, snake in _ALIASES.items()}

# Top-level setting names in both spellings, lowercased: how a config file's
# shape is told.
_TOP_LEVEL_KEYS = {
    spelling.lower() for name in Settings.model_fields for spelling in (name, to_camel(name))
}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out
