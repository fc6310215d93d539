"""SIGTERM under load, as Kubernetes sends it: no failed request.

A client that keeps sending to the terminating instance for 2 s after the
signal (a load balancer that has not yet seen the pod go) and to the others
throughout: the instance reports not ready at once, keeps serving through
its lame duck (``server.lameDuckS``), drains, and only then closes. Three
instances on a real etcd; the tests share one mesh and run in file order,
each leaving three instances running.
"""

from __future__ import annotations

import json
import pathlib
import signal
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests._processes import meshserve, read_until
from tests.integration._etcd import EtcdServer
from tests.integration._load import Load, Sent
from tests.integration._mesh import Mesh, make_model, run_mesh, wait_until
from tests.integration._resources import ISVC, apply, infer
from tests.integration._up import Registration, run_up

pytestmark = pytest.mark.timeout(240)

# The client's lag: it keeps sending to a terminating instance this long.
_KEEP_SENDING_S = 2.0
# Longer than the lag, with room for a busy machine.
_LAME_DUCK_S = 3.0
_MODELS = [f"m{i}" for i in range(6)]


@pytest.fixture(scope="module")
def mesh(etcd: EtcdServer, work: pathlib.Path) -> Iterator[Mesh]:
    model = make_model(work / "models" / "model.skops")
    with run_mesh(etcd, work / "mesh", server_settings={"lameDuckS": _LAME_DUCK_S}) as running:
        for name in _MODELS:
            running.management(0).register(name, type="sklearn", path=model)
            running.infer(0, name)  # placed across the three instances
        yield running


class _Targets:
    """Round robin over the listed instances; one sent SIGTERM only for
    ``_KEEP_SENDING_S`` after the signal, as a lagging load balancer does."""

    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh

    def __call__(self, n: int) -> int | None:
        now = time.monotonic()
        targets = [
            index
            for index, instance in sorted(list(self._mesh.instances.items()))
            if instance.signalled_at is None or now - instance.signalled_at < _KEEP_SENDING_S
        ]
        return targets[n % len(targets)] if targets else None


def _load(mesh: Mesh) -> Load:
    return Load(mesh, _MODELS, target=_Targets(mesh), clients=3, pause_s=0.02)


def _holding(mesh: Mesh) -> int:
    """The instance other than 0 holding the most models."""
    by_id = {inst.instance_id: index for index, inst in mesh.instances.items()}
    counts = dict.fromkeys(by_id.values(), 0)
    for name in _MODELS:
        for holder in mesh.loaded_on(0, name):
            if holder in by_id:
                counts[by_id[holder]] += 1
    return max((i for i in counts if i != 0), key=lambda i: counts[i])


def _sent_to(sent: list[Sent], index: int, *, after: float) -> list[Sent]:
    return [s for s in sent if s.index == index and s.started >= after]


def _restart(mesh: Mesh, index: int) -> None:
    """Wait for a signalled instance to exit; start its replacement (on new
    ports) and wait until it reports ready."""
    assert mesh.wait_exit(index, timeout=60) == 0
    mesh.start(index)
    wait_until(lambda: mesh.ready(index), 30, f"instance {index}'s replacement is ready")


def test_a_second_signal_ends_the_lame_duck(tmp_path: pathlib.Path) -> None:
    # First in the file: the module's mesh starts with the next test.
    model = make_model(tmp_path / "m.skops")
    register = [Registration(name="m", type="sklearn", path=model)]
    long = {"MESHSERVE_SERVER__LAME_DUCK_S": "60"}
    with run_up(tmp_path / "data", register=register, env=long) as up:
        client = up.http_client()
        up.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not client.is_server_ready(), 10, "not ready after SIGTERM")
        # A lame duck: not ready, still serving.
        assert infer(up, "m").shape == (1,)
        signalled = time.monotonic()
        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(30) == 0
        client.close()
    assert time.monotonic() - signalled < 30, "the second signal skipped the 60 s lame duck"
    assert "lame duck ended early" in up.log.read_text()


class _SharedPort:
    """``up --instances N``'s one address, as a :class:`Load` sender: one
    channel (one connection) per index, so the connections land on
    different instances (SO_REUSEPORT)."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._clients: dict[int, triton_grpc.InferenceServerClient] = {}
        self._lock = threading.Lock()

    def infer(self, index: int, model: str, rows: int = 2, *, timeout: float = 30) -> object:
        with self._lock:
            if index not in self._clients:
                self._clients[index] = triton_grpc.InferenceServerClient(
                    self._address, channel_args=[("grpc.use_local_subchannel_pool", 1)]
                )
            client = self._clients[index]
        data = np.ones((rows, 4), dtype=np.float32)
        tensor = triton_grpc.InferInput("input-0", list(data.shape), "FP32")
        tensor.set_data_from_numpy(data)
        return client.infer(model, [tensor], client_timeout=timeout)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def test_sighup_restarts_up_instances_one_at_a_time_failing_no_request(
    tmp_path: pathlib.Path,
) -> None:
    model = make_model(tmp_path / "m.skops")
    names = ["s0", "s1", "s2"]
    register = tmp_path / "models.yaml"
    entries = "".join(f"  - {{name: {n}, type: sklearn, path: {model}}}\n" for n in names)
    register.write_text("models:\n" + entries)
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0", "--register", str(register)]
    lame_duck = {"MESHSERVE_SERVER__LAME_DUCK_S": str(_LAME_DUCK_S)}
    with (tmp_path / "up.log").open("wb") as log, meshserve(args, env=lame_duck, stderr=log) as up:
        read_until(up, r"meshserve up: ready", 120)
        endpoints = json.loads((data / "endpoints.json").read_text())
        before = {entry["pid"] for entry in endpoints["instances"]}
        sender = _SharedPort(endpoints["grpc"])

        def restarted() -> bool:
            now = json.loads((data / "endpoints.json").read_text())["instances"]
            return len(now) == 2 and not before & {entry["pid"] for entry in now}

        with Load(sender, names, [0, 1, 2], clients=3, pause_s=0.02) as load:
            time.sleep(0.5)
            up.send_signal(signal.SIGHUP)
            wait_until(restarted, 90, "both instances restarted")
            time.sleep(0.5)
        sender.close()
    assert load.failures == [], [str(s) for s in load.failures]
    assert load.ok > 50
    assert "rolling restart done" in (tmp_path / "up.log").read_text()


def test_sigterm_one_of_three_under_load_fails_no_request(mesh: Mesh) -> None:
    victim = _holding(mesh)
    with _load(mesh) as load:
        time.sleep(0.5)
        mesh.signal(victim)
        signalled = time.monotonic()
        time.sleep(_KEEP_SENDING_S + 0.5)
        assert mesh.wait_exit(victim, timeout=60) == 0
        stopped = time.monotonic()
        time.sleep(0.5)
    assert load.failures == [], [str(s) for s in load.failures]
    late = _sent_to(load.sent, victim, after=signalled + 1.0)
    assert late, "the client kept sending to the terminating instance"
    assert load.ok > 30
    sent_after = len(load.since(signalled))
    print(f"measured: SIGTERM to exit {stopped - signalled:.2f} s; {sent_after} requests after it")
    for name in _MODELS:
        assert mesh.infer(0, name).shape == (2,)
    mesh.start(victim)


def test_readiness_flips_at_once_while_requests_are_still_served(mesh: Mesh) -> None:
    victim = _holding(mesh)
    wait_until(lambda: mesh.ready(victim), 30, "the victim is ready")
    assert mesh.rest_ready(victim) == 200
    with _load(mesh) as load:
        time.sleep(0.5)
        mesh.signal(victim)
        signalled = time.monotonic()
        wait_until(lambda: not mesh.ready(victim), 2, "ServerReady false after SIGTERM")
        flipped = time.monotonic()
        print(f"measured: not ready {flipped - signalled:.3f} s after SIGTERM")
        assert mesh.rest_ready(victim) == 503
        # Not ready, still serving: requests sent to it after the flip succeed.
        time.sleep(max(0.0, signalled + _KEEP_SENDING_S - time.monotonic()))
        after_flip = _sent_to(load.sent, victim, after=flipped)
        _restart(mesh, victim)
    assert after_flip, "no request reached the instance while it was not ready"
    assert [s for s in after_flip if not s.ok] == []
    assert load.failures == [], [str(s) for s in load.failures]


def test_a_rolling_restart_of_all_three_under_load_fails_no_request(mesh: Mesh) -> None:
    with _load(mesh) as load:
        time.sleep(0.5)
        started = time.monotonic()
        for index in (0, 1, 2):
            mesh.signal(index)
            _restart(mesh, index)
            time.sleep(0.5)
        took = time.monotonic() - started
    assert load.failures == [], [str(s) for s in load.failures]
    assert load.ok > 50
    print(f"measured: rolling restart {took:.1f} s, {load.ok} requests, 0 failed")
    # Every replacement took requests.
    for index, instance in mesh.instances.items():
        assert instance.signalled_at is None
        assert mesh.infer(index, _MODELS[index]).shape == (2,)


def test_get_watch_on_up_instances_keeps_watching_through_a_rolling_restart(
    tmp_path: pathlib.Path,
) -> None:
    """The shared port ages connections out (and a restart closes them):
    ``get -w`` watches again instead of ending."""
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0"]
    env = {
        "MESHSERVE_SERVER__LAME_DUCK_S": "2",
        # The watch's connection is cut 1 s after its age is up.
        "MESHSERVE_SERVER__GRPC_MAX_CONNECTION_AGE_GRACE_S": "1",
    }
    with (tmp_path / "up.log").open("wb") as log, meshserve(args, env=env, stderr=log) as up:
        read_until(up, r"meshserve up: ready", 120)
        before = {e["pid"] for e in json.loads((data / "endpoints.json").read_text())["instances"]}
        watch = ["get", "isvc", "-w", "--data-dir", str(data)]
        with (
            (tmp_path / "watch.log").open("wb") as errors,
            meshserve(watch, stderr=errors) as watcher,
        ):
            read_until(watcher, r"^NAME", 60)
            up.send_signal(signal.SIGHUP)

            def restarted() -> bool:
                now = json.loads((data / "endpoints.json").read_text())["instances"]
                return len(now) == 2 and not before & {entry["pid"] for entry in now}

            wait_until(restarted, 90, "both instances restarted")
            time.sleep(3)  # more than the age and its grace
            uri = "pvc://claim/v1/model.skops"
            done = apply(
                SimpleNamespace(data_dir=data), ISVC.format(name="w", format="sklearn", uri=uri)
            )
            assert done.returncode == 0, done.stderr
            read_until(watcher, r"^w ", 60)
            assert watcher.poll() is None, (tmp_path / "watch.log").read_text()
