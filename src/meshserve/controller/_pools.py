"""Runtime pools: how many instances each ServingRuntime needs, and how one runs.

ModelMesh Serving gives every enabled multiModel ServingRuntime a
Deployment of ``podsPerRuntime`` pods (or the runtime's ``replicas``), and
scales it to zero ``scaleToZero.gracePeriodSeconds`` after the last
predictor using it goes. :class:`PoolPlanner` makes the same decisions;
whoever runs processes (``meshserve up``; the operator on Kubernetes)
implements :class:`RuntimePools` and starts what the plan says.

A pool instance runs its runtime one of three ways (:class:`PoolSpec`):
meshserve's own runtime out of process (``meshserve-pickle``); a container's
command line that serves the SPI itself; or MLServer behind meshserve's
adapter (``builtInAdapter.serverType: mlserver``). Command lines may refer
to ``$(VAR)`` as Kubernetes allows; the pool provides
``MESHSERVE_RUNTIME_LISTEN`` (the SPI address to serve), ``MESHSERVE_DATA_PORT``
and ``MESHSERVE_HTTP_PORT`` (free loopback ports), ``MESHSERVE_RUNTIME_DIR``
and ``MESHSERVE_CAPACITY_BYTES`` (``runtime.capacityBytes``).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from meshserve.resources import ClusterServingRuntime, Container, ServingRuntime

__all__ = [
    "PICKLE_RUNTIME",
    "PoolPlan",
    "PoolPlanner",
    "PoolSpec",
    "PoolSpecMaker",
    "RuntimePools",
    "expand_vars",
    "format_labels",
    "pool_spec",
    "pool_variables",
]

PICKLE_RUNTIME = "meshserve-pickle"
"""meshserve's runtime out of process with pickle allowed (joblib models)."""

AnyRuntime = ServingRuntime | ClusterServingRuntime

LISTEN_VAR = "MESHSERVE_RUNTIME_LISTEN"
DATA_PORT_VAR = "MESHSERVE_DATA_PORT"
HTTP_PORT_VAR = "MESHSERVE_HTTP_PORT"
RUNTIME_DIR_VAR = "MESHSERVE_RUNTIME_DIR"
CAPACITY_VAR = "MESHSERVE_CAPACITY_BYTES"
_ADAPTER_LOAD_TIMEOUT_MS = 90_000
MLSERVER_MODELS_DIR = f"$({RUNTIME_DIR_VAR})/mlserver-models"


def pool_variables(
    *, listen: str, data_port: int, http_port: int, runtime_dir: str, capacity_bytes: int
) -> dict[str, str]:
    """The ``$(VAR)`` values one pool instance's command lines may use."""
    return {
        LISTEN_VAR: listen,
        DATA_PORT_VAR: str(data_port),
        HTTP_PORT_VAR: str(http_port),
        RUNTIME_DIR_VAR: runtime_dir,
        CAPACITY_VAR: str(capacity_bytes),
    }


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """How to run one instance of a runtime's pool, and how many to run."""

    name: str
    """The runtime's name: the pool's key and its instances' ``rt:`` label."""
    replicas: int
    host: Literal["process", "external"]
    allow_pickle: bool = False
    command: tuple[str, ...] = ()
    """With ``host: external``: the command line serving the SPI (``$(VAR)`` unexpanded)."""
    env: tuple[tuple[str, str], ...] = ()
    data_address: str = ""
    """Where inference goes when it is not the SPI address (``$(VAR)`` unexpanded)."""
    labels: tuple[str, ...] = ()
    """Placement labels beyond ``rt:<name>``: ``mt:<format>[:<version>]``."""


class RuntimePools(Protocol):
    """Runs the instances a plan asks for."""

    async def sync(self, pools: Mapping[str, PoolSpec]) -> None:
        """Make every named pool run its spec's replicas; stop pools not named."""

    def problem(self, name: str) -> str | None:
        """Why pool ``name``'s instances are not running, if they are not."""

    async def close(self) -> None:
        """Stop every pool's instances."""


@dataclass(frozen=True, slots=True)
class PoolPlan:
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    """Runtimes that cannot run here, and why."""


class PoolPlanner:
    """Decides each runtime's replicas: in use -> its count; unused for the
    grace period (or never used) -> 0, when scale to zero is on."""

    def __init__(
        self,
        *,
        pods_per_runtime: int,
        scale_to_zero: bool,
        grace_period_s: float,
        mlserver_executable: str = "mlserver",
        skip: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        spec: PoolSpecMaker | None = None,
    ) -> None:
        """``spec``: how a runtime's pool runs, or why it cannot
        (:func:`pool_spec`, for local processes, unless given: the operator
        runs pools as Deployments, whose limits are not this machine's)."""
        self._pods = pods_per_runtime
        self._scale_to_zero = scale_to_zero
        self._grace_s = grace_period_s
        self._skip = frozenset(skip)
        self._clock = clock
        self._last_used: dict[str, float] = {}
        self._spec = spec or _local_spec(mlserver_executable)

    def plan(self, runtimes: Sequence[AnyRuntime], used: Iterable[str]) -> PoolPlan:
        """The pools for these accepted runtimes, given the names of those
        some resource uses now."""
        now = self._clock()
        for name in used:
            self._last_used[name] = now
        plan = PoolPlan()
        for runtime in runtimes:
            name = runtime.name
            if not self._runs_pool(runtime):
                continue
            wanted = self._pods if runtime.spec.replicas is None else runtime.spec.replicas
            if self._scale_to_zero:
                last = self._last_used.get(name)
                if last is None or now - last >= self._grace_s:
                    wanted = 0
            spec = self._spec(runtime, wanted)
            if isinstance(spec, str):
                plan.refused[name] = spec
            else:
                plan.pools[name] = spec
        return plan

    def cannot_run(self, runtime: AnyRuntime) -> str | None:
        """Why ``runtime``'s instances cannot run here; None when they can,
        or when it has no pool (skipped, disabled, not multiModel)."""
        if not self._runs_pool(runtime):
            return None
        spec = self._spec(runtime, 0)
        return spec if isinstance(spec, str) else None

    def _runs_pool(self, runtime: AnyRuntime) -> bool:
        return (
            runtime.name not in self._skip
            and not runtime.spec.is_disabled
            and runtime.spec.is_multi_model
        )


PoolSpecMaker = Callable[[AnyRuntime, int], "PoolSpec | str"]
"""How a runtime's pool of ``replicas`` instances runs, or why it cannot."""


def _local_spec(mlserver_executable: str) -> PoolSpecMaker:
    def spec(runtime: AnyRuntime, replicas: int) -> PoolSpec | str:
        return pool_spec(runtime, replicas=replicas, mlserver_executable=mlserver_executable)

    return spec


def pool_spec(
    runtime: AnyRuntime, *, replicas: int, mlserver_executable: str = "mlserver"
) -> PoolSpec | str:
    """How ``runtime``'s instances run here, or why they cannot."""
    spec = runtime.spec
    labels = tuple(format_labels(runtime))
    if runtime.name == PICKLE_RUNTIME and not spec.containers:
        return PoolSpec(
            name=runtime.name, replicas=replicas, host="process", allow_pickle=True, labels=labels
        )
    adapter = spec.built_in_adapter
    if adapter is not None and adapter.server_type == "mlserver":
        container = spec.containers[0] if spec.containers else None
        server = _argv(container) if container is not None else ()
        if not server:
            server = (mlserver_executable, "start", MLSERVER_MODELS_DIR)
        env = _env(container) + tuple((e.name, e.value or "") for e in adapter.env)
        timeout_ms = adapter.model_loading_timeout_millis or _ADAPTER_LOAD_TIMEOUT_MS
        command = (
            *_ADAPTER,
            "--listen",
            f"$({LISTEN_VAR})",
            "--capacity-bytes",
            f"$({CAPACITY_VAR})",
            "--model-loading-timeout-ms",
            str(timeout_ms),
            "--mlserver-grpc",
            f"127.0.0.1:$({DATA_PORT_VAR})",
            "--mlserver-http",
            f"127.0.0.1:$({HTTP_PORT_VAR})",
            "--models-dir",
            MLSERVER_MODELS_DIR,
            "--",
            *server,
        )
        return PoolSpec(
            name=runtime.name,
            replicas=replicas,
            host="external",
            command=command,
            env=env,
            data_address=f"127.0.0.1:$({DATA_PORT_VAR})",
            labels=labels,
        )
    if adapter is not None:
        return (
            f"builtInAdapter serverType {adapter.server_type!r} cannot run on this machine "
            "(meshserve runs mlserver locally; the others run on Kubernetes)"
        )
    commands = [c for c in spec.containers if _argv(c)]
    if len(spec.containers) != 1 or not commands:
        return (
            "a runtime runs on this machine from exactly one container with a command that "
            f"serves the model-mesh SPI at $({LISTEN_VAR}); this one has "
            f"{len(spec.containers)} container(s), {len(commands)} with a command"
        )
    return PoolSpec(
        name=runtime.name,
        replicas=replicas,
        host="external",
        command=_argv(commands[0]),
        env=_env(commands[0]),
        labels=labels,
    )


_ADAPTER = (sys.executable, "-m", "meshserve", "adapter", "mlserver")
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_vars(text: str, values: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known names are replaced, unknown
    ones left as written, ``$$`` is a literal ``$``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return values.get(name, match.group(0))

    return _VAR.sub(replace, text)


def _argv(container: Container) -> tuple[str, ...]:
    return (*container.command, *container.args) if container.command else ()


def _env(container: Container | None) -> tuple[tuple[str, str], ...]:
    if container is None:
        return ()
    return tuple((e.name, e.value or "") for e in container.env if e.value is not None)


def format_labels(runtime: AnyRuntime) -> Iterable[str]:
    """ModelMesh Serving labels a runtime's pods with each format it
    auto-selects, with and without the version."""
    for supported in runtime.spec.supported_model_formats:
        if not supported.auto_select:
            continue
        yield f"mt:{supported.name}"
        if supported.version:
            yield f"mt:{supported.name}:{supported.version}"
