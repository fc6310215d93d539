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
