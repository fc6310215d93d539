"""The servers ``bench/overhead.py`` measures, each in its own process tree.

Every target is a context manager that starts its server in a new session
(so it is its own process group), waits until it serves, yields a
``Running`` (the gRPC address and the root pid), and on exit stops the whole
group: SIGTERM, then SIGKILL after a grace. Its stdout and stderr go to a
log file in the run's work directory; the tail is shown when a start fails.

A target that cannot run on this machine (``meshserve up`` missing, MLServer
not installed) raises ``Unavailable`` before starting anything.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "TARGETS",
    "ModelFiles",
    "Running",
    "StartFailed",
    "Target",
    "Unavailable",
    "find_mlserver",
]

HOST = "127.0.0.1"
_BENCH_DIR = pathlib.Path(__file__).resolve().parent
# MLServer 1.7 pins fastapi < 0.116, hence starlette < 0.47, which meshserve's
# own starlette may not accept: it can live in a venv of its own, outside
# the repository.
_MLSERVER_VENV = pathlib.Path.home() / ".cache" / "meshserve-bench" / "mlserver-venv"
MLSERVER_ENV = "MESHSERVE_BENCH_MLSERVER"
"""Environment variable naming the ``mlserver`` executable to use."""

_STOP_GRACE_S = 5.0


class Unavailable(Exception):
    """The target cannot run here; the message says why."""


class StartFailed(Exception):
    """The target was started but did not come up."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """The one estimator, saved for each kind of server."""

    name: str
    skops: pathlib.Path
    joblib: pathlib.Path


@dataclass(frozen=True, slots=True)
class Running:
    url: str
    """host:port of the gRPC v2 endpoint."""
    pid: int
    """Root of the target's process tree (for CPU accounting)."""
    notes: tuple[str, ...] = ()
    views: tuple[tuple[str, str], ...] = ()
    """Other addresses of the same processes measured as results of their
    own: (name, host:port) (the ``forwarded`` target's holder)."""

    def cpu_seconds(self) -> float:
        """User + system CPU seconds used so far by the live processes of the tree."""
        return tree_cpu_seconds(self.pid)


def wait_quiet(
    running: Running, *, timeout_s: float = 15.0, window_s: float = 0.5, max_cores: float = 0.1
) -> bool:
    """Wait until the target's processes use under ``max_cores`` over a
    ``window_s`` window (background start-up work done, e.g. meshserve's
    library preload, which would otherwise run during the first measured
    point); False if they were still busy after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = running.cpu_seconds()
        time.sleep(window_s)
        if running.cpu_seconds() - before < max_cores * window_s:
            return True
    return False


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its live descendants, read from /proc (Linux);
    0.0 where /proc cannot be read."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the command name, which may hold spaces and parentheses.
        fields = text[text.rindex(")") + 2 :].split()
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class StartContext:
    """What a target gets to start with."""

    work_dir: pathlib.Path
    """An empty directory of its own, removed after the run."""
    model: ModelFiles
    label: int
    """The expected prediction for the known row (the floor returns it)."""
    start_timeout_s: float
    mlserver: str | None
    """Path of the mlserver executable, if one was given or found."""
    max_batch_size: int = 32
    """Adaptive batching for meshserve's built-in runtime (1: off) and for
    ``mlserver-batched``."""
    max_batch_delay_ms: float = 0.0
    row: tuple[float, ...] = ()
    """The known row (a target that sends a request of its own at start)."""

    def batching_env(self) -> dict[str, str]:
        """The built-in runtime's batching settings, as meshserve reads them."""
        return {
            "MESHSERVE_RUNTIME__MAX_BATCH_SIZE": str(self.max_batch_size),
            "MESHSERVE_RUNTIME__MAX_BATCH_DELAY_MS": str(self.max_batch_delay_ms),
        }


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    description: str
    start: Callable[[StartContext], contextlib.AbstractContextManager[Running]]


# --- processes ---------------------------------------------------------------


class _Process:
    """A child in its own session whose output lines are logged and queued."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: pathlib.Path,
        cwd: pathlib.Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self._lines: queue.Queue[str] = queue.Queue()
        self._log = log_path.open("w", encoding="utf-8", errors="replace")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._log.write(line)
            self._log.flush()
            self._lines.put(line)

    def wait_for_line(self, pattern: str, *, timeout_s: float) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartFailed(f"no line matching {pattern!r} within {timeout_s:.0f} s")
            try:
                line = self._lines.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                self.check_alive()
                continue
            match = regex.search(line)
            if match:
                return match

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise StartFailed(f"exited with status {code} while starting")

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the whole group, SIGKILL it after the grace."""
        pgid = self.popen.pid  # start_new_session: the child leads its own group
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=_STOP_GRACE_S)
        # Whatever is left of the group (the root, or children that outlived
        # it) gets no second grace.
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=_STOP_GRACE_S)
        self._reader.join(timeout=1.0)
        self._log.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def _process(
    argv: Sequence[str],
    *,
    name: str,
    ctx: StartContext,
    cwd: pathlib.Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[_Process]:
    proc = _Process(argv, log_path=ctx.work_dir / f"{name}.log", cwd=cwd or ctx.work_dir, env=env)
    try:
        try:
            yield proc
        except StartFailed as exc:
            raise StartFailed(f"{exc}; last output:\n{proc.tail()}") from None
    finally:
        proc.stop()


def _free_ports(count: int) -> list[int]:
    # Held open together so the ports differ; a race with another process
    # taking one before the server binds it is possible but rare on loopback.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def up_command(data_dir: pathlib.Path) -> tuple[list[str], int, int]:
    """The argv of `meshserve up` on free loopback ports with its data in
    ``data_dir``, and those gRPC and REST ports."""
    grpc_port, rest_port = _free_ports(2)
    argv = [
        sys.executable,
        "-m",
        "meshserve",
        "up",
        "--data-dir",
        str(data_dir),
        "--host",
        HOST,
        "--grpc-port",
        str(grpc_port),
        "--rest-port",
        str(rest_port),
        # A free one: the default port may be taken by another meshserve
        # on the machine, and the bench reads no metrics.
        "--metrics-port",
        "0",
    ]
    return argv, grpc_port, rest_port


def interrupt_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every started process is stopped
    and the work directory removed."""

    def interrupt(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _wait_http_ok(url: str, *, proc: _Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        proc.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=1.0) as reply:
                if reply.status == 200:
                    return
                last = f"HTTP {reply.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise StartFailed(f"{url} did not return 200 within {timeout_s:.0f} s (last: {last})")


def _wait_file(path: pathlib.Path, *, proc: _Process, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.is_file():
        proc.check_alive()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- the targets ---------------------------------------------------------------


@contextlib.contextmanager
def _floor(ctx: StartContext) -> Iterator[Running]:
    argv = [
        sys.executable,
        str(_BENCH_DIR / "_floor.py"),
        "--listen",
        f"{HOST}:0",
        "--model-name",
        ctx.model.name,
        "--label",
        str(ctx.label),
    ]
    with _process(argv, name="floor", ctx=ctx) as proc:
        match = proc.wait_for_line(r"floor listening on (\S+)", timeout_s=ctx.start_timeout_s)
        yield Running(url=match.group(1), pid=proc.popen.pid)


@contextlib.contextmanager
def _direct(ctx: StartContext) -> Iterator[Running]:
    argv = [
        sys.executable,
        "-m",
        "meshserve",
        "runtime",
        "--listen",
        f"{HOST}:0",
        "--model",
        f"{ctx.model.name}:sklearn:{ctx.model.skops}",
    ]
    with _process(argv, name="direct", ctx=ctx, env=ctx.batching_env()) as proc:
        match = proc.wait_for_line(
            r"meshserve runtime listening on (\S+:\d+)", timeout_s=ctx.start_timeout_s
        )
        yield Running(url=match.group(1), pid=proc.popen.pid)


def up_available() -> str | None:
    """None when ``meshserve up`` exists, else the reason it cannot run."""
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "meshserve", "up", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run `meshserve up --help`: {exc}"
    if probe.returncode != 0:
        said = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"`meshserve up` is not available (the CLI says: {said})"
    return None


def _up(runtime_host: str) -> Callable[[StartContext], contextlib.AbstractContextManager[Running]]:
    @contextlib.contextmanager
    def start(ctx: StartContext) -> Iterator[Running]:
        reason = up_available()
        if reason is not None:
            raise Unavailable(reason)
        data_dir = ctx.work_dir / "data"
        data_dir.mkdir()
        register = ctx.work_dir / "register.yaml"
        # JSON is YAML: no YAML library needed to write the file.
        register.write_text(
            json.dumps(
                {
                    "models": [
                        {"name": ctx.model.name, "type": "sklearn", "path": str(ctx.model.skops)}
                    ]
                }
            )
        )
        argv, grpc_port, rest_port = up_command(data_dir)
        argv += [
            "--runtime-host",
            runtime_host,
            "--register",
            str(register),
        ]
        env = ctx.batching_env()
        notes: list[str] = []
        if runtime_host == "process" and os.geteuid() == 0:
            # As root the child would drop to runtime.runAsUser (nobody),
            # which cannot read a Python installed under /root; the speed
            # measured is the same either way, so keep root and say so.
            env["MESHSERVE_RUNTIME__RUN_AS_USER"] = ""
            notes.append("runtime child kept root (bench run as root)")
        with _process(argv, name=f"up-{runtime_host}", ctx=ctx, env=env) as proc:
            _wait_http_ok(
                f"http://{HOST}:{rest_port}/v2/health/ready",
                proc=proc,
                timeout_s=ctx.start_timeout_s,
            )
            # endpoints.json comes after the register file is applied, which
            # may finish after /v2/health/ready first answers 200.
            if not _wait_file(data_dir / "endpoints.json", proc=proc, timeout_s=10.0):
                notes.append("endpoints.json was not written within 10 s of ready")
            yield Running(url=f"{HOST}:{grpc_port}", pid=proc.popen.pid, notes=tuple(notes))

    return start


def _up_pool(runtime: str) -> Callable[[StartContext], contextlib.AbstractContextManager[Running]]:
    """`meshserve up` serving the model from a runtime pool: an
    InferenceService naming ``runtime``, applied with the CLI; requests go
    to `up`'s address and are forwarded to the pool's instance."""

    @contextlib.contextmanager
    def start(ctx: StartContext) -> Iterator[Running]:
        reason = up_available()
        if reason is not None:
            raise Unavailable(reason)
        env = {"MESHSERVE_RUNTIME__RUN_AS_USER": ""} if os.geteuid() == 0 else {}
        notes = ["pool children kept root (bench run as root)"] if env else []
        if runtime == "meshserve-mlserver":
            if ctx.mlserver is None:
                raise Unavailable("MLServer is not installed (scripts/mlserver-venv makes it)")
            env["MESHSERVE_CONTROL__MLSERVER_EXECUTABLE"] = ctx.mlserver
        pvc = ctx.work_dir / "pvc" / "claim"
        pvc.mkdir(parents=True)
        shutil.copy(ctx.model.joblib, pvc / "model.joblib")
        data_dir = ctx.work_dir / "data"
        argv, grpc_port, rest_port = up_command(data_dir)
        argv += ["--pvc-root", str(ctx.work_dir / "pvc")]
        # One instance in the pool: the comparison is about the hop, not scale.
        env["MESHSERVE_CONTROL__PODS_PER_RUNTIME"] = "1"
        isvc = {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": ctx.model.name,
                "annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"},
            },
            "spec": {
                "predictor": {
                    "model": {
                        "modelFormat": {"name": "sklearn"},
                        "runtime": runtime,
                        "storageUri": "pvc://claim/model.joblib",
                    }
                }
            },
        }
        cli = [sys.executable, "-m", "meshserve"]
        with _process(argv, name=f"up-{runtime}", ctx=ctx, env=env) as proc:
            _wait_http_ok(
                f"http://{HOST}:{rest_port}/v2/health/ready",
                proc=proc,
                timeout_s=ctx.start_timeout_s,
            )
            subprocess.run(
                [*cli, "apply", "-f", "-", "--data-dir", str(data_dir)],
                input=json.dumps(isvc),
                text=True,
                check=True,
                capture_output=True,
                timeout=60,
            )
            _wait_http_ok(
                f"http://{HOST}:{rest_port}/v2/models/{ctx.model.name}/ready",
                proc=proc,
                timeout_s=ctx.start_timeout_s,
            )
            yield Running(url=f"{HOST}:{grpc_port}", pid=proc.popen.pid, notes=tuple(notes))

    return start


def find_mlserver(explicit: str | None) -> str | None:
    """The mlserver executable: ``explicit``, $MESHSERVE_BENCH_MLSERVER, one
    beside this Python, one on PATH, or ~/.cache/meshserve-bench/mlserver-venv's."""
    candidates = [
        explicit,
        os.environ.get(MLSERVER_ENV),
        str(pathlib.Path(sys.executable).parent / "mlserver"),
        shutil.which("mlserver"),
        str(_MLSERVER_VENV / "bin" / "mlserver"),
        str(pathlib.Path(__file__).resolve().parents[1] / ".venv-mlserver" / "bin" / "mlserver"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK) and pathlib.Path(candidate).is_file():
            return candidate
    return None


MLSERVER_MIN_BATCH_TIME_S = 0.001
"""MLServer batches only with a positive max_batch_time: the shortest wait
it is given when meshserve's maxBatchDelayMs is 0."""


def _mlserver_batching(ctx: StartContext) -> dict[str, Any]:
    """MLServer's adaptive batching at meshserve's limits (model-settings.json)."""
    return {
        "max_batch_size": ctx.max_batch_size,
        "max_batch_time": max(ctx.max_batch_delay_ms / 1000, MLSERVER_MIN_BATCH_TIME_S),
    }


def _mlserver(
    *, batched: bool, inline: bool = False
) -> Callable[[StartContext], contextlib.AbstractContextManager[Running]]:
    @contextlib.contextmanager
    def start(ctx: StartContext) -> Iterator[Running]:
        with _mlserver_running(ctx, batched=batched, inline=inline) as running:
            yield running

    return start


@contextlib.contextmanager
def _mlserver_running(ctx: StartContext, *, batched: bool, inline: bool) -> Iterator[Running]:
    if ctx.mlserver is None:
        raise Unavailable(
            "MLServer is not installed: install `mlserver mlserver-sklearn` (1.7.x) into this "
            f"venv or into {_MLSERVER_VENV}, or pass --mlserver PATH / set {MLSERVER_ENV}"
        )
    repo = ctx.work_dir / "mlserver"
    model_dir = repo / ctx.model.name
    model_dir.mkdir(parents=True)
    shutil.copy(ctx.model.joblib, model_dir / "model.joblib")
    http_port, grpc_port, metrics_port = _free_ports(3)
    settings: dict[str, Any] = {
        "debug": False,
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "environments_dir": str(ctx.work_dir / "mlserver-envs"),
    }
    if inline:
        # Inference in the server process itself, no worker process.
        # MLServer's default is one worker process (it loads no model that
        # way with uvloop >= 0.22: scripts/mlserver-venv pins uvloop < 0.22).
        settings["parallel_workers"] = 0
    (repo / "settings.json").write_text(json.dumps(settings))
    model_settings: dict[str, Any] = {
        "name": ctx.model.name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
    }
    notes: tuple[str, ...] = ()
    if batched:
        model_settings.update(_mlserver_batching(ctx))
        notes = (
            f"adaptive batching: max_batch_size {model_settings['max_batch_size']}, "
            f"max_batch_time {model_settings['max_batch_time']:g} s",
        )
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    argv = [ctx.mlserver, "start", str(repo)]
    with _process(argv, name="mlserver", ctx=ctx, cwd=repo) as proc:
        _wait_http_ok(
            f"http://{HOST}:{http_port}/v2/models/{ctx.model.name}/ready",
            proc=proc,
            timeout_s=ctx.start_timeout_s,
        )
        yield Running(url=f"{HOST}:{grpc_port}", pid=proc.popen.pid, notes=notes)


@contextlib.contextmanager
def _one_hop(ctx: StartContext) -> Iterator[Running]:
    import _forwarded  # imports this module: loaded only when used

    with _forwarded.start_forwarded(ctx) as running:
        yield running


TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            "floor",
            "grpc.aio no-op v2 server: raw-bytes handlers, fixed reply, no model",
            _floor,
        ),
        Target(
            "direct", "`meshserve runtime --model` (the runtime alone, model preloaded)", _direct
        ),
        Target(
            "up-inprocess",
            "`meshserve up --runtime-host inprocess` (model registered, loaded on first request)",
            _up("inprocess"),
        ),
        Target(
            "up-process",
            "`meshserve up --runtime-host process` (runtime in a child on a Unix socket)",
            _up("process"),
        ),
        Target(
            "mlserver",
            "MLServer 1.7 + mlserver-sklearn, .joblib, its defaults (one inference worker process)",
            _mlserver(batched=False),
        ),
        Target(
            "mlserver-inline",
            "the same MLServer with parallel_workers 0 (inference in its server process)",
            _mlserver(batched=False, inline=True),
        ),
        Target(
            "mlserver-batched",
            "the same MLServer with its adaptive batching at meshserve's limits",
            _mlserver(batched=True),
        ),
        Target(
            "up-pickle-pool",
            "`meshserve up` + InferenceService on meshserve-pickle (.joblib; one forwarding "
            "hop to the pool's instance, its runtime out of process)",
            _up_pool("meshserve-pickle"),
        ),
        Target(
            "up-mlserver-pool",
            "`meshserve up` + InferenceService on meshserve-mlserver (hop to the pool's "
            "instance, then MLServer through the adapter's data path)",
            _up_pool("meshserve-mlserver"),
        ),
        Target(
            "forwarded",
            "`meshserve up --instances 2`, the client calling the instance without the model "
            "(one hop per request); forwarded-local: the holder called directly",
            _one_hop,
        ),
    )
}
"""All targets, in the order they run."""
