"""Settings of the mesh (placement, copies, membership) and of the resource
controller."""

from __future__ import annotations

import pathlib

from pydantic import Field

from meshserve.settings._group import Group

__all__ = ["ControlSettings", "MeshSettings"]


class MeshSettings(Group):
    """How an instance takes part in the mesh: membership, routing, copies."""

    instance_id: str = ""
    """This instance's id in the mesh; empty: ``<hostname>-<pid>``."""

    internal_host: str = "127.0.0.1"
    """Address of the internal port other instances forward requests to."""

    internal_port: int = Field(default=0, ge=0, le=65535)
    """Internal gRPC port (0 picks a free one; it is published in the store)."""

    data_plane: bool = True
    """Forward inference to other instances over their data port (framed
    raw bytes on one long-lived connection per peer, ~0.2 ms a hop against
    ~0.6 ms for a second gRPC call), and serve one here. Off: no data port
    here, and forwards go over the internal gRPC port, as they do to a peer
    that publishes no data port (an older version, or one with it off)."""

    data_port: int = Field(default=0, ge=0, le=65535)
    """The data port, on ``internal_host`` (0 picks a free one; it is
    published in the store). Guarded like the internal port: the mesh
    secret, and mutual TLS when TLS is on."""

    data_handshake_timeout_s: float = Field(default=5.0, gt=0)
    """The most a new data-port connection may take to present the mesh
    secret (with TLS, the TLS handshake too) before it is closed: long
    enough for a loaded machine, short enough that idle strangers cannot
    hold sockets open."""

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

    store_outage_grace_s: float = Field(default=10.0, ge=0)
    """After this instance regains the store (etcd was down, or out of reach),
    peers missing from its view count as gone only this many seconds later:
    their leases expiring while nobody could reach the store is no evidence,
    and they need a moment to reconnect and refresh. Until then the last
    known peers and copies keep serving and nothing is reloaded for them.
    Default: one lease TTL (``lease_ttl_s``)."""

    publish_interval_s: float = Field(default=1.0, gt=0)
    """Most frequent refresh of the instance record (capacity, used, rates)."""

    max_attempts: int = Field(default=8, ge=1)
    """Instances a request may try (ModelMesh: 8 iterations), which bounds
    forwarding hops too."""

    forward_timeout_s: float = Field(default=120.0, gt=0)
    """Longest a forward that makes the peer load the model first (a new
    placement, or a copy still loading) may take, in seconds; the client's
    own deadline shortens it. Loads of large models take minutes, so long;
    a peer that hangs meanwhile is dropped when its lease goes."""

    hop_deadline_fraction: float = Field(default=0.3, gt=0, le=1)
    """Share of the client's remaining time a forward to a loaded copy on
    another instance may take before it is retried elsewhere: 0.3 leaves a
    5 s request 1.5 s per hop, so a hung peer costs one hop and two more
    tries still fit. Inference slower than this share of the client's
    deadline is cut and retried: raise it for such models."""

    hop_deadline_min_s: float = Field(default=1.0, gt=0)
    """Shortest hop deadline, in seconds (unless the client has less time
    left): a peer on a busy machine answers within a second; shorter would
    retry healthy peers."""

    hop_deadline_max_s: float = Field(default=30.0, gt=0)
    """Longest hop deadline, in seconds, however long the client waits: a
    hung peer costs a request at most this."""

    hop_deadline_default_s: float = Field(default=30.0, gt=0)
    """Hop deadline, in seconds, of a request whose client set no deadline
    (REST, gRPC without one): as long as ``hop_deadline_max_s`` so slow
    inference is not cut, short enough that a hung peer does not hold the
    request for ``forward_timeout_s``."""

    suspect_probe_interval_s: float = Field(default=0.5, gt=0)
    """A peer whose hop timed out is avoided (suspect) until it answers a
    liveness probe or its lease goes; it is probed this often, in seconds
    (one small call: cheap, and a peer back from a pause is used again
    within half a second)."""

    suspect_probe_timeout_s: float = Field(default=1.0, gt=0)
    """Deadline of one liveness probe of a suspect peer, in seconds (a live
    peer answers in milliseconds; a second allows for a loaded machine)."""

    runtime_restart_hold_s: float = Field(default=30.0, ge=0)
    """Longest a request waits, in seconds, for this instance's restarting
    runtime when no other instance holds a copy (the client's deadline
    shortens it); a restart takes a few seconds. With a copy elsewhere the
    request is forwarded there at once."""

    peer_retry_s: float = Field(default=5.0, gt=0)
    """An instance that could not be reached is skipped this long (and a
    data port that could not be reached: forwards to that instance go over
    its internal gRPC port meanwhile)."""

    rate_check_interval_s: float = Field(default=10.0, gt=0)
    """How often request rates are compared with ``scaleup_rpm_threshold``."""

    scaleup_rpm_threshold: int = Field(default=2000, gt=0)
    """Requests per minute per copy above which a model gets another copy.
    The store key ``config/scaleup_rpm_threshold`` overrides it at run time."""

    rebalance_min_rpm: int = Field(default=300, gt=0)
    """Requests per minute an instance serves, and a model is served at
    here, for the model to be copied to an underused instance (load
    spreading: restarted or new instances take copies of hot models within a
    few rate checks). 300 (5 per second): busy enough that a second copy
    takes real load off, and far below ``scaleup_rpm_threshold``, which
    adds copies wherever there is room. Space an idle instance has is free;
    the copies go again like any other when cold."""

    rebalance_load_ratio: float = Field(default=2.0, gt=1)
    """An instance counts as underused, for load spreading, while it serves
    fewer than 1/this of the busy instance's requests per minute: 2 means a
    copy moves load only while the gap is large, so two similarly loaded
    instances never trade copies."""

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


class ControlSettings(Group):
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

    reconcile_backoff_initial_s: float = Field(default=1.0, gt=0)
    """First delay before the controller tries again a resource whose
    reconcile failed (its vmodel name owned by another resource, a mesh call
    that raised); it doubles per failure up to ``reconcile_backoff_max_s``,
    and a change to the resource (or a deleted resource, which may free what
    it waited for) tries it at once. Other resources never wait for it."""

    reconcile_backoff_max_s: float = Field(default=60.0, gt=0)
    """Longest such delay: a minute keeps a resource that stays broken from
    costing a mesh call (and a log line) every pass, and still recovers
    within a minute of what blocked it going."""

    mlserver_executable: str = "mlserver"
    """The ``mlserver`` command the shipped ``meshserve-mlserver`` runtime
    runs (a path, or a name looked up on PATH). MLServer needs a Python
    environment of its own: see docs/model-formats.md."""

    operator_interval_s: float = Field(default=2.0, gt=0)
    """How often ``meshserve operator`` reconciles when nothing changed
    (a change in the cluster wakes it at once): statuses follow the mesh
    (a copy that loaded) within this, without a pass costing much."""

    operator_lease_duration_s: float = Field(default=15.0, gt=0)
    """How long the operator's Lease (coordination.k8s.io) holds without a
    renewal: a replica that died is replaced by another after this, and
    one that cannot renew stops acting before another may start."""

    operator_lease_renew_s: float = Field(default=5.0, gt=0)
    """How often the active operator renews its Lease, and a standby one
    checks it: a third of the duration leaves two renewals' slack."""

    operator_api_timeout_s: float = Field(default=30.0, gt=0)
    """Longest wait for one Kubernetes API call of the operator (watches
    excepted): long enough for a loaded API server, short enough that a
    stuck call does not outlive the Lease for long."""

    allowed_runtime_images: tuple[str, ...] = ()
    """Patterns (``fnmatch``: ``*``, ``?``, ``[...]``) that a ServingRuntime's
    container images and commands must match to be used. Empty: none, so
    only the built-in runtime serves until an operator allows more; a
    refused runtime's status says which image or command did not match."""
