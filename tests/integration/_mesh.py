"""A mesh of real ``meshserve instance`` processes on a real etcd, for tests.

Timings are short (2 s leases, sub-second checks) so failover and scaling
happen within a test's patience; every process is stopped (SIGTERM, then
SIGKILL) and every directory removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import tritonclient.grpc as triton_grpc
import yaml

from tests._processes import stop_process
from tests.integration._etcd import EtcdServer
from tests.integration._up import Management

__all__ = ["Mesh", "MeshInstance", "make_model", "run_mesh"]

START_TIMEOUT_S = 60.0

SETTINGS = {
    "mesh": {
        "leaseTtlS": 2,
        "publishIntervalS": 0.2,
        "rateCheckIntervalS": 0.5,
        "janitorIntervalS": 1,
        "lastUsePublishIntervalS": 1,
        "reaperIntervalS": 1,
        "peerRetryS": 2,
        "drainDeadlineS": 15,
        "forwardTimeoutS": 30,
        # Peers re-publish within a lease after the store is back: as short
        # as the leases, so a test after an etcd restart sees deaths again.
        "storeOutageGraceS": 2,
    },
    # No lame duck unless a test asks for one (test_faults_sigterm.py).
    "server": {"gracePeriodS": 3, "lameDuckS": 0},
    "runtime": {"preloadLibraries": False},
    "store": {"etcdConnectTimeoutS": 10},
}


def make_model(path: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """A small sklearn model (4 float features, 3 classes) saved as .skops."""
    import skops.io
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = np.arange(60) % 3
    path.parent.mkdir(parents=True, exist_ok=True)
    skops.io.dump(LogisticRegression(max_iter=200).fit(x, y), path)
    return path


@dataclass
class MeshInstance:
    index: int
    instance_id: str
    proc: subprocess.Popen[bytes]
    address: str
    """The instance's own gRPC address (its internal port)."""
    metrics: str
    data_dir: pathlib.Path
    rest: str | None = None
    """The instance's REST base URL (``http://host:port``)."""
    signalled_at: float | None = None
    """time.monotonic() when the test sent it SIGTERM (None: not yet)."""


@dataclass
class Mesh:
    etcd: EtcdServer
    work: pathlib.Path
    config: pathlib.Path
    instances: dict[int, MeshInstance] = field(default_factory=dict)
    _clients: dict[str, triton_grpc.InferenceServerClient] = field(default_factory=dict)
    _management: dict[str, Management] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, index: int) -> MeshInstance:
        data_dir = self.work / f"i{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        endpoints = data_dir / "endpoints.json"
        endpoints.unlink(missing_ok=True)
        log = (data_dir / "instance.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshserve",
                "instance",
                "--config",
                str(self.config),
                "--store",
                f"etcd://{self.etcd.endpoint}",
                "--data-dir",
                str(data_dir),
                "--instance-id",
                f"inst-{index}",
                "--grpc-port",
                "0",
                "--rest-port",
                "0",
                "--metrics-port",
                "0",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "MESHSERVE_LOG_LEVEL": "info"},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not endpoints.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError(
                    f"instance {index} did not start:\n"
                    + (data_dir / "instance.log").read_text(errors="replace")[-4000:]
                )
            time.sleep(0.05)
        entry = json.loads(endpoints.read_text())["instances"][0]
        instance = MeshInstance(
            index=index,
            instance_id=entry["id"],
            proc=proc,
            address=entry["grpc"],
            metrics=entry["metrics"],
            data_dir=data_dir,
            rest=entry["rest"],
        )
        self.instances[index] = instance
        return instance

    def kill(self, index: int) -> None:
        instance = self.instances.pop(index)
        instance.proc.send_signal(signal.SIGKILL)
        instance.proc.wait(10)

    def terminate(self, index: int, *, timeout: float = 40.0) -> int:
        self.signal(index)
        return self.wait_exit(index, timeout=timeout)

    def signal(self, index: int, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` and return at once: the instance stays listed (and
        reachable through :meth:`client`) until :meth:`wait_exit`."""
        instance = self.instances[index]
        if sig is signal.SIGTERM and instance.signalled_at is None:
            instance.signalled_at = time.monotonic()
        instance.proc.send_signal(sig)

    def wait_exit(self, index: int, *, timeout: float = 40.0) -> int:
        """Wait for a signalled instance to exit, then drop it from the mesh."""
        code = self.instances[index].proc.wait(timeout)
        del self.instances[index]
        return code

    def ready(self, index: int) -> bool:
        """What the instance's v2 ServerReady says."""
        return bool(self.client(index).is_server_ready(client_timeout=5))

    def rest_ready(self, index: int) -> int:
        """The HTTP status of the instance's ``/v2/health/ready``."""
        url = f"{self.instances[index].rest}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def client(self, index: int) -> triton_grpc.InferenceServerClient:
        address = self.instances[index].address
        # Load's client threads share one client (one channel) per instance.
        with self._lock:
            if address not in self._clients:
                self._clients[address] = triton_grpc.InferenceServerClient(url=address)
            return self._clients[address]

    def management(self, index: int) -> Management:
        address = self.instances[index].address
        if address not in self._management:
            self._management[address] = Management(address)
        return self._management[address]

    def infer(self, index: int, model: str, rows: int = 2, *, timeout: float = 30) -> np.ndarray:
        data = np.ones((rows, 4), dtype=np.float32)
        tensor = triton_grpc.InferInput("input-0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        result = self.client(index).infer(model, [tensor], client_timeout=timeout)
        output: np.ndarray | None = result.as_numpy("predict")
        assert output is not None
        return output

    def copies(self, index: int, model: str) -> dict[str, str]:
        """instance id -> copy state, as one instance reports it."""
        status = self.management(index).status(model)
        from meshserve.protocol._pb import model_mesh_pb2 as mm

        return {
            c.location: mm.ModelStatusInfo.ModelStatus.Name(c.copyStatus)
            for c in status.modelCopyInfos
        }

    def loaded_on(self, index: int, model: str) -> set[str]:
        return {i for i, s in self.copies(index, model).items() if s == "LOADED"}

    def metrics_text(self, index: int) -> str:
        with urllib.request.urlopen(self.instances[index].metrics, timeout=5) as reply:
            return str(reply.read().decode())

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for management in self._management.values():
            management.close()
        # SIGINT first, to all at once: a stop without the lame duck, in parallel.
        for instance in self.instances.values():
            with contextlib.suppress(ProcessLookupError):
                instance.proc.send_signal(signal.SIGINT)
        for instance in self.instances.values():
            stop_process(instance.proc, grace=10.0)
        self.instances.clear()


@contextlib.contextmanager
def run_mesh(
    etcd: EtcdServer,
    work: pathlib.Path,
    *,
    instances: int = 3,
    capacity_bytes: int = 64 * 2**20,
    mesh_settings: dict[str, object] | None = None,
    server_settings: dict[str, object] | None = None,
    runtime_settings: dict[str, object] | None = None,
) -> Iterator[Mesh]:
    """``mesh_settings`` / ``runtime_settings``: keys of those groups set on
    top of ``SETTINGS`` (e.g. ``{"host": "process"}`` for runtime children)."""
    settings = json.loads(json.dumps(SETTINGS))
    settings["runtime"]["capacityBytes"] = capacity_bytes
    settings["runtime"].update(runtime_settings or {})
    settings["mesh"].update(mesh_settings or {})
    settings["server"].update(server_settings or {})
    work.mkdir(parents=True, exist_ok=True)
    config = work / "mesh.yaml"
    config.write_text(yaml.safe_dump(settings))
    mesh = Mesh(etcd=etcd, work=work, config=config)
    try:
        for index in range(instances):
            mesh.start(index)
        yield mesh
    finally:
        mesh.close()


def wait_until(predicate: object, timeout: float, message: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s: {message}")
