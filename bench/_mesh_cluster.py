"""Starting and stopping ``meshserve up`` for the mesh benchmark, and
reading where its instances answer.

``start_mesh`` runs ``meshserve up [--instances N]`` in its own session
(bench/_targets.py's process handling), waits for ``<data-dir>/endpoints.json``
to list the instances, and stops the whole tree on the way out: SIGTERM to
``up`` (which stops its instances and etcd), then SIGKILL to whatever of
its process group is left after the grace.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import _targets

__all__ = [
    "InstanceEndpoint",
    "MeshEndpoints",
    "RunningMesh",
    "UpFlags",
    "parse_endpoints",
    "probe_up",
    "start_mesh",
]

HOST = _targets.HOST
_STOP_GRACE_S = 20.0
"""How long ``up`` may take to stop its instances and etcd before SIGKILL."""


@dataclass(frozen=True, slots=True)
class InstanceEndpoint:
    id: str
    grpc: str
    """host:port of this instance's own gRPC address (v2 + mmesh + admin)."""
    metrics: str | None
    """URL of its Prometheus metrics, when it exposes them."""
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class MeshEndpoints:
    grpc: str
    """The mesh's shared public gRPC address."""
    instances: tuple[InstanceEndpoint, ...]


def parse_endpoints(data: Any) -> MeshEndpoints:
    """The addresses in an endpoints.json document.

    An instance entry without its own ``grpc`` is the single instance of a
    one-instance ``up``, which answers on the public address.
    """
    if not isinstance(data, dict) or not isinstance(data.get("grpc"), str):
        raise ValueError("endpoints.json: expected an object with a 'grpc' address")
    public = data["grpc"]
    entries = data.get("instances") or [{"id": "instance-0"}]
    instances = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"endpoints.json: instances[{index}] is not an object")
        pid = entry.get("pid")
        instances.append(
            InstanceEndpoint(
                id=str(entry.get("id", f"instance-{index}")),
                grpc=str(entry.get("grpc") or public),
                metrics=str(entry["metrics"]) if entry.get("metrics") else None,
                pid=pid if isinstance(pid, int) else None,
            )
        )
    return MeshEndpoints(grpc=public, instances=tuple(instances))


@dataclass(frozen=True, slots=True)
class UpFlags:
    """What this checkout's ``meshserve up`` accepts."""

    instances: bool
    """``--instances N`` exists."""
    capacity: str | None
    """The flag that sets runtime.capacity_bytes (``--capacity-bytes`` or the
    older ``--capacity``); None: only a config file can."""
    metrics_port: bool = False
    """``--metrics-port`` exists (its default, ModelMesh's 2112, may be taken)."""


def probe_up() -> UpFlags:
    """Read ``meshserve up --help``; raises _targets.Unavailable if there is no ``up``."""
    reason = _targets.up_available()
    if reason is not None:
        raise _targets.Unavailable(reason)
    text = subprocess.run(
        [sys.executable, "-m", "meshserve", "up", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    words = set(text.replace(",", " ").split())
    capacity = next((f for f in ("--capacity-bytes", "--capacity") if f in words), None)
    return UpFlags(
        instances="--instances" in words,
        capacity=capacity,
        metrics_port="--metrics-port" in words,
    )


@dataclass(frozen=True, slots=True)
class RunningMesh:
    endpoints: MeshEndpoints
    pid: int
    """Root of the process tree (``up``)."""
    data_dir: pathlib.Path
    log_path: pathlib.Path

    def cpu_seconds(self) -> float:
        return _targets.tree_cpu_seconds(self.pid)


def _argv(
    *, flags: UpFlags, instances: int, capacity_bytes: int, data_dir: pathlib.Path, config: str
) -> list[str]:
    argv, _, _ = _targets.up_command(data_dir)
    if flags.instances:
        argv += ["--instances", str(instances)]
    elif instances != 1:
        raise _targets.Unavailable(
            f"`meshserve up` has no --instances flag yet, so it cannot run {instances} instances"
        )
    if flags.metrics_port:
        argv += ["--metrics-port", "0"]
    if flags.capacity is not None:
        argv += [flags.capacity, str(capacity_bytes)]
    return [*argv, "--config", config]


@contextlib.contextmanager
def start_mesh(
    *,
    work_dir: pathlib.Path,
    name: str,
    flags: UpFlags,
    instances: int,
    capacity_bytes: int,
    start_timeout_s: float,
    eviction_policy: str | None = None,
) -> Iterator[RunningMesh]:
    """Run ``meshserve up`` with ``instances`` instances of ``capacity_bytes``
    each until the block exits; yields once endpoints.json lists them all.
    ``eviction_policy`` sets ``cache.evictionPolicy`` (None: up's default)."""
    base = work_dir / name
    data_dir = base / "data"
    data_dir.mkdir(parents=True)
    config = base / "config.yaml"
    # JSON is YAML. The capacity flag, where `up` has one, overrides the file's.
    settings: dict[str, Any] = {"runtime": {"capacityBytes": capacity_bytes}}
    if eviction_policy is not None:
        settings["cache"] = {"evictionPolicy": eviction_policy}
    config.write_text(json.dumps(settings))
    argv = _argv(
        flags=flags,
        instances=instances,
        capacity_bytes=capacity_bytes,
        data_dir=data_dir,
        config=str(config),
    )
    proc = _targets._Process(argv, log_path=base / "up.log", cwd=base)
    instance_pids: list[int] = []
    try:
        try:
            endpoints = _wait_endpoints(
                data_dir / "endpoints.json", proc=proc, count=instances, timeout_s=start_timeout_s
            )
        except _targets.StartFailed as exc:
            raise _targets.StartFailed(f"{exc}; last output:\n{proc.tail()}") from None
        instance_pids = [i.pid for i in endpoints.instances if i.pid is not None]
        yield RunningMesh(
            endpoints=endpoints, pid=proc.popen.pid, data_dir=data_dir, log_path=proc.log_path
        )
    finally:
        _stop(proc)
        _kill_leftovers(instance_pids, name=name)


def _wait_endpoints(
    path: pathlib.Path, *, proc: _targets._Process, count: int, timeout_s: float
) -> MeshEndpoints:
    deadline = time.monotonic() + timeout_s
    last = "endpoints.json not written"
    while time.monotonic() < deadline:
        proc.check_alive()
        if path.is_file():
            try:
                endpoints = parse_endpoints(json.loads(path.read_text()))
            except (ValueError, OSError) as exc:  # caught mid-write
                last = str(exc)
            else:
                if len(endpoints.instances) >= count:
                    return endpoints
                last = f"endpoints.json lists {len(endpoints.instances)} of {count} instances"
        time.sleep(0.1)
    raise _targets.StartFailed(f"mesh not up within {timeout_s:.0f} s ({last})")


def _stop(proc: _targets._Process) -> None:
    """SIGTERM ``up`` alone so it stops its children in order; the group
    (instances, runtimes, etcd) gets SIGKILL from ``proc.stop`` after that."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.popen.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.popen.wait(timeout=_STOP_GRACE_S)
    proc.stop()


def _kill_leftovers(pids: list[int], *, name: str) -> None:
    """SIGKILL instances ``up`` started that outlived it (outside its process
    group, say): said out loud, since ``up`` should have stopped them."""
    for pid in pids:
        if not _running(pid):
            continue
        print(
            f"{name}: instance pid {pid} outlived `meshserve up`; killing it",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"
