"""Ray Serve side by side with the mesh: the same trace, the same capacity in
models, through Ray Serve's model multiplexing.

Ray runs from its own environment (scripts/ray-venv), as MLServer does: the
app (bench/_ray_app.py) starts a private Ray on 127.0.0.1 with one
deployment of ``replicas`` replicas, each holding at most
``models_per_replica`` models (``@serve.multiplexed``); requests go to its
HTTP proxy with the model id in ``serve_multiplexed_model_id``, and Serve
routes each to a replica that has the model loaded where one does. Stopped
with SIGTERM (Serve and Ray shut down), then SIGKILL for whatever is left in
its session after a grace period.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import _mesh_load
import _targets
import httpx

__all__ = ["RAY_VENV", "RayRun", "find_ray_python", "run_ray"]

RAY_VENV = pathlib.Path.home() / ".cache" / "meshserve-bench" / "ray-venv"
_APP = pathlib.Path(__file__).resolve().parent / "_ray_app.py"
_STOP_GRACE_S = 30.0


def find_ray_python() -> str | None:
    """The Python of the Ray environment (``MESHSERVE_RAY_PYTHON`` or
    scripts/ray-venv's), None if it is not installed."""
    explicit = os.environ.get("MESHSERVE_RAY_PYTHON")
    candidate = pathlib.Path(explicit) if explicit else RAY_VENV / "bin" / "python"
    return str(candidate) if candidate.is_file() else None


@dataclass(frozen=True, slots=True)
class RayRun:
    result: _mesh_load.TraceResult
    loads: int
    """Models loaded by the replicas during the trace (each a miss)."""
    start_s: float
    cpu_s: float
    """CPU of Ray's processes during the trace."""


async def run_ray(
    *,
    python: str,
    work_dir: pathlib.Path,
    paths: Mapping[str, str],
    trace: Sequence[str],
    rows: Mapping[str, Sequence[float]],
    expected: Mapping[str, int],
    replicas: int,
    models_per_replica: int,
    concurrency: int,
    time_limit_s: float,
    start_timeout_s: float,
    request_timeout_s: float,
) -> RayRun:
    """Start Ray Serve, send ``trace`` to it, stop it."""
    started = time.monotonic()
    with _serve(
        python=python,
        work_dir=work_dir,
        paths=paths,
        replicas=replicas,
        models_per_replica=models_per_replica,
        max_ongoing_requests=concurrency,
        start_timeout_s=start_timeout_s,
    ) as (proc, port):
        start_s = time.monotonic() - started
        loads: dict[str, int] = {}
        url = f"http://{_targets.HOST}:{port}/"
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=request_timeout_s, limits=limits) as client:

            async def send(index: int, model_id: str) -> int:
                try:
                    reply = await client.post(
                        url,
                        json={"row": list(rows[model_id])},
                        headers={"serve_multiplexed_model_id": model_id},
                    )
                except httpx.HTTPError as exc:
                    raise _mesh_load.RequestFailed(type(exc).__name__, str(exc)) from None
                if reply.status_code != 200:
                    raise _mesh_load.RequestFailed(f"HTTP_{reply.status_code}", reply.text[:200])
                answer = reply.json()
                replica = str(answer["replica"])
                loads[replica] = max(loads.get(replica, 0), int(answer["loads"]))
                return int(answer["label"])

            cpu_before = _targets.tree_cpu_seconds(proc.popen.pid)
            result = await _mesh_load.drive(
                trace=trace,
                send=send,
                expected=expected,
                concurrency=concurrency,
                time_limit_s=time_limit_s,
            )
            cpu_s = _targets.tree_cpu_seconds(proc.popen.pid) - cpu_before
    return RayRun(result=result, loads=sum(loads.values()), start_s=start_s, cpu_s=cpu_s)


@contextlib.contextmanager
def _serve(
    *,
    python: str,
    work_dir: pathlib.Path,
    paths: Mapping[str, str],
    replicas: int,
    models_per_replica: int,
    max_ongoing_requests: int,
    start_timeout_s: float,
) -> Iterator[tuple[_targets._Process, int]]:
    base = work_dir / "ray"
    base.mkdir(parents=True)
    (port,) = _targets._free_ports(1)
    config = base / "config.json"
    config.write_text(
        json.dumps(
            {
                "paths": dict(paths),
                "replicas": replicas,
                "models_per_replica": models_per_replica,
                "max_ongoing_requests": max_ongoing_requests,
                "num_cpus": os.cpu_count() or 1,
                "port": port,
                # Short: Ray's Unix sockets live under it (107-byte limit).
                "temp_dir": str(base / "t"),
            }
        )
    )
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
        # Single-node mode: the node address stays 127.0.0.1 (otherwise Ray
        # swaps a loopback address for the machine's own) and its servers
        # listen on loopback only.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    proc = _targets._Process(
        [python, str(_APP), str(config)], log_path=base / "ray.log", cwd=base, env=env
    )
    session = os.getsid(proc.popen.pid)
    try:
        try:
            proc.wait_for_line(r"^READY", timeout_s=start_timeout_s)
        except _targets.StartFailed as exc:
            raise _targets.StartFailed(f"Ray Serve: {exc}; last output:\n{proc.tail()}") from None
        yield proc, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=_STOP_GRACE_S)
        proc.stop()
        _kill_session(session)


def _kill_session(session: int) -> None:
    """SIGKILL what Ray left running in the app's session (its raylet and
    workers are started there; a clean shutdown leaves nothing)."""
    left = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session and fields[0] != "Z":
            left.append(int(entry.name))
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if left:
        print(f"ray: killed {len(left)} process(es) left after shutdown", file=sys.stderr)
