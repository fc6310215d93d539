"""`meshserve adapter mlserver` in front of a real MLServer, driven by a real
`meshserve up --runtime-host external`.

The adapter starts MLServer 1.7 from ``.venv-mlserver`` (made by
scripts/mlserver-venv; ``$MESHSERVE_TEST_MLSERVER`` names another
``mlserver``). The instance speaks the SPI to the adapter on a Unix socket
and sends inference straight to MLServer's gRPC port, as ModelMesh does.
Also here: the supervised command that runs MLServer (restarts, process
group, death with its parent).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass

import joblib
import numpy as np
import psutil
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import InferenceServerException

from meshserve.protocol._pb import model_mesh_pb2 as mm
from tests._processes import meshserve, wait_for_line
from tests.integration._mlserver import mlserver_command
from tests.integration._objstores import free_ports
from tests.integration._up import Up, run_up, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
RESTART_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Adapter:
    proc: subprocess.Popen[bytes]
    socket: str
    grpc_port: int
    models_dir: pathlib.Path

    @property
    def mlserver_grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def mlserver_pids(self) -> list[int]:
        """MLServer's processes (the adapter's children), running now."""
        with contextlib.suppress(psutil.Error):
            return [
                child.pid
                for child in psutil.Process(self.proc.pid).children(recursive=True)
                if child.is_running() and child.status() != psutil.STATUS_ZOMBIE
            ]
        return []


@dataclass(frozen=True, slots=True)
class Setup:
    adapter: Adapter
    up: Up
    work: pathlib.Path


def _kill_all(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=5)


@contextlib.contextmanager
def _run_adapter(work: pathlib.Path) -> Iterator[Adapter]:
    mlserver = mlserver_command()
    models_dir = work / "mlserver-models"
    grpc_port, http_port = free_ports(2)
    # Short: Unix socket paths are limited to ~107 bytes.
    socket_dir = tempfile.mkdtemp(prefix="msa-")
    socket = f"{socket_dir}/adapter.sock"
    args = ["adapter", "mlserver", "--listen", f"unix:{socket}"]
    args += ["--mlserver-grpc", f"127.0.0.1:{grpc_port}"]
    args += ["--mlserver-http", f"127.0.0.1:{http_port}", "--models-dir", str(models_dir)]
    args += ["--", mlserver, "start", str(models_dir)]
    children: list[psutil.Process] = []
    try:
        with meshserve(args) as proc:
            wait_for_line(proc, r"listening on unix:", timeout=START_TIMEOUT_S)
            adapter = Adapter(proc, socket, grpc_port, models_dir)
            try:
                yield adapter
            finally:
                with contextlib.suppress(psutil.Error):
                    children = psutil.Process(proc.pid).children(recursive=True)
        # The adapter stopped MLServer; kill whatever it did not.
        _kill_all(children)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("mlserver")
    with _run_adapter(work) as adapter:
        args = ["--runtime-host", "external", "--runtime-address", f"unix:{adapter.socket}"]
        args += ["--runtime-data-address", adapter.mlserver_grpc]
        with run_up(work / "data", args=args) as up:
            yield Setup(adapter, up, work)


@dataclass(frozen=True, slots=True)
class Model:
    path: pathlib.Path
    estimator: LogisticRegression


def _make_model(path: pathlib.Path, *, seed: int) -> Model:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(120, 4)).astype(np.float32)
    labels = (rows[:, 0] + rows[:, 1] > 0).astype(np.int64) + (rows[:, 2] > 1).astype(np.int64)
    estimator = LogisticRegression(max_iter=300).fit(rows, labels)
    joblib.dump(estimator, path)
    return Model(path, estimator)


@pytest.fixture(scope="module")
def model(setup: Setup) -> Model:
    return _make_model(setup.work / "lr.joblib", seed=0)


def _rows(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 4)).astype(np.float32)


def _infer_grpc(address: str, model_id: str, rows: np.ndarray) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(address)
    try:
        tensor = triton_grpc.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        result = client.infer(model_id, [tensor], client_timeout=60)
    finally:
        client.close()
    predictions = result.as_numpy("predict")
    assert predictions is not None
    return np.asarray(predictions).reshape(-1)


def _infer_http(address: str, model_id: str, rows: np.ndarray, *, binary: bool) -> np.ndarray:
    client = triton_http.InferenceServerClient(address, network_timeout=60)
    try:
        tensor = triton_http.InferInput("input-0", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        result = client.infer(model_id, [tensor])
    finally:
        client.close()
    predictions = result.as_numpy("predict")
    assert predictions is not None
    return np.asarray(predictions).reshape(-1)


def _register(up: Up, model_id: str, path: pathlib.Path) -> mm.ModelStatusInfo:
    return up.management.register(model_id, type="sklearn", path=path, load_now=True, sync=True)


def test_predictions_through_meshserve_equal_sklearns(setup: Setup, model: Model) -> None:
    reply = _register(setup.up, "lr", model.path)
    assert setup.up.management.status_name("lr") == "LOADED", reply.errors
    rows = _rows(7)
    expected = model.estimator.predict(rows)
    np.testing.assert_array_equal(_infer_grpc(setup.up.grpc, "lr", rows), expected)
    for binary in (True, False):
        np.testing.assert_array_equal(
            _infer_http(setup.up.rest, "lr", rows, binary=binary), expected
        )
    # The size is ModelMesh's estimate, bytes on disk times 1.25 (not the
    # default of 1 MB), counted by the instance in ModelMesh's 8 KiB units.
    estimate = int(model.path.stat().st_size * 1.25)
    assert setup.up.management.models()["lr"].sizeBytes == -(-estimate // 8192) * 8192


def test_an_id_with_a_slash_reaches_mlserver_as_its_name(setup: Setup, model: Model) -> None:
    reply = _register(setup.up, "team/lr", model.path)
    assert setup.up.management.status_name("team/lr") == "LOADED", reply.errors
    rows = _rows(5)
    expected = model.estimator.predict(rows)
    np.testing.assert_array_equal(_infer_grpc(setup.up.grpc, "team/lr", rows), expected)
    # MLServer holds it under the id itself.
    direct = _infer_grpc(setup.adapter.mlserver_grpc, "team/lr", rows)
    np.testing.assert_array_equal(direct, expected)
    assert "team%2Flr" in [p.name for p in setup.adapter.models_dir.iterdir()]


def test_a_model_mlserver_cannot_load_reports_loading_failed(setup: Setup, model: Model) -> None:
    data = model.path.read_bytes()
    truncated = setup.work / "truncated.joblib"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = setup.work / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    empty = setup.work / "empty.joblib"
    empty.write_bytes(b"")
    reasons: dict[str, str] = {}
    for model_id, path in [("truncated", truncated), ("garbage", garbage), ("empty", empty)]:
        _register(setup.up, model_id, path)
        status = setup.up.management.status(model_id)
        assert status.status == status.LOADING_FAILED, status
        (error,) = status.errors
        prefix = f"MLServer could not load '{model_id}' (INTERNAL): "
        assert error.startswith(prefix), error
        reasons[model_id] = error.removeprefix(prefix)
    # MLServer passes on the exception's text; an empty file's EOFError has
    # none, which the reason says.
    assert reasons["truncated"] and reasons["garbage"]
    assert "no reason" not in reasons["truncated"] + reasons["garbage"]
    assert reasons["empty"] == "it gave no reason; its log has the traceback"
    # Nothing of them stays in MLServer's repository; the good model serves on.
    names = sorted(p.name for p in setup.adapter.models_dir.iterdir())
    assert not {"truncated", "garbage", "empty"} & set(names)
    assert "lr" in names
    rows = _rows(3)
    expected = model.estimator.predict(rows)
    np.testing.assert_array_equal(_infer_grpc(setup.up.grpc, "lr", rows), expected)


def _not_found_at_mlserver(adapter: Adapter, model_id: str, rows: np.ndarray) -> bool:
    try:
        _infer_grpc(adapter.mlserver_grpc, model_id, rows)
    except InferenceServerException as exc:
        assert exc.status() == "StatusCode.NOT_FOUND", exc
        return True
    return False


def test_an_unloaded_model_is_not_found(setup: Setup, model: Model) -> None:
    _register(setup.up, "gone", model.path)
    rows = _rows(2)
    np.testing.assert_array_equal(
        _infer_grpc(setup.up.grpc, "gone", rows), model.estimator.predict(rows)
    )
    setup.up.management.mesh.unregisterModel(mm.UnregisterModelRequest(modelId="gone"), timeout=30)
    with pytest.raises(InferenceServerException) as caught:
        _infer_grpc(setup.up.grpc, "gone", rows)
    assert caught.value.status() == "StatusCode.NOT_FOUND"
    # MLServer itself no longer holds it (unloading follows the unregister).
    wait_until(
        lambda: _not_found_at_mlserver(setup.adapter, "gone", rows),
        timeout=30,
        what="MLServer to unload the model",
    )
    assert "gone" not in [p.name for p in setup.adapter.models_dir.iterdir()]


def _unless_unavailable(address: str, model_id: str, rows: np.ndarray) -> tuple[np.ndarray] | None:
    """The predictions (in a tuple, which is truthy), or None while the
    instance answers UNAVAILABLE."""
    try:
        return (_infer_grpc(address, model_id, rows),)
    except InferenceServerException as exc:
        assert exc.status() == "StatusCode.UNAVAILABLE", exc
        time.sleep(0.2)
        return None


def test_a_killed_mlserver_is_restarted_and_models_load_again(setup: Setup, model: Model) -> None:
    _register(setup.up, "before", model.path)
    (first,) = setup.adapter.mlserver_pids()
    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: (pids := setup.adapter.mlserver_pids()) and pids != [first],
        timeout=RESTART_TIMEOUT_S,
        what="the adapter to start MLServer again",
    )
    rows = _rows(4)
    expected = model.estimator.predict(rows)
    # The instance takes the runtime as lost (requests get UNAVAILABLE, which
    # clients may retry) until MLServer is back; then what it had loaded
    # loads again.
    (answer,) = wait_until(
        lambda: _unless_unavailable(setup.up.grpc, "before", rows),
        timeout=RESTART_TIMEOUT_S,
        what="the model to serve again",
    )
    np.testing.assert_array_equal(answer, expected)
    assert setup.up.management.status_name("before") == "LOADED"
    other = _make_model(setup.work / "after.joblib", seed=5)
    reply = _register(setup.up, "after", other.path)
    assert setup.up.management.status_name("after") == "LOADED", reply.errors
    np.testing.assert_array_equal(
        _infer_grpc(setup.up.grpc, "after", rows), other.estimator.predict(rows)
    )


def test_a_non_loopback_mlserver_is_refused(tmp_path: pathlib.Path) -> None:
    mlserver = mlserver_command()
    command = [sys.executable, "-m", "meshserve", "adapter", "mlserver"]
    command += ["--listen", f"unix:{tmp_path}/a.sock", "--models-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--mlserver-grpc", "10.1.2.3:8001"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "--mlserver-grpc" in done.stderr and "network interface" in done.stderr
    done = subprocess.run(
        [*command, "--mlserver-grpc", "127.0.0.1:8001", "--", mlserver, "start", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--mlserver-http" in done.stderr
    done = subprocess.run(
        [*command, "--mlserver-grpc", "127.0.0.1:8001", "--", str(tmp_path / "no-mlserver")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "is not an executable" in done.stderr


def test_up_refuses_a_data_address_on_a_network_interface(tmp_path: pathlib.Path) -> None:
    command = [sys.executable, "-m", "meshserve", "up", "--runtime-host", "external"]
    command += ["--runtime-address", f"unix:{tmp_path}/a.sock", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--runtime-data-address", "10.1.2.3:8001"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--runtime-data-address" in done.stderr and "network interface" in done.stderr


# -- the supervised command ----------------------------------------------------------

_SUPERVISE = textwrap.dedent(
    """
    import asyncio, json, sys
    import uvloop
    from meshserve.runtime._supervised import SupervisedCommand

    loop, user = sys.argv[1], json.loads(sys.argv[2])

    async def main():
        command = SupervisedCommand(
            name="test", argv=sys.argv[3:], restart_backoff_initial_s=0.1,
            restart_backoff_max_s=0.2, stop_grace_s=2, user=user and tuple(user),
        )
        await command.start()
        print("started", flush=True)
        try:
            await asyncio.sleep(3600)
        finally:
            await command.stop()

    # The servers' default loop is uvloop, which takes fewer arguments
    # for a subprocess than asyncio's.
    (uvloop.run if loop == "uvloop" else asyncio.run)(main())
    """
)

_LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def _pid_in(path: pathlib.Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().split()[0])
    return None


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextlib.contextmanager
def _supervisor(
    *, loop: str, user: tuple[int, int] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], pathlib.Path]]:
    """A process supervising ``sh`` (on event loop ``loop``, as ``user``)
    that records its pid, a background ``sleep``'s pid and its uid and gid
    in a file, then waits."""
    # Where the user can write (pytest's tmp dirs are private).
    shared = pathlib.Path(tempfile.mkdtemp(prefix="ms-supervised-"))
    shared.chmod(0o777)
    pids = shared / "pids"
    script = f"sleep 300 & echo $$ $! $(id -u) $(id -g) > {pids}; wait"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISE, loop, json.dumps(user), "sh", "-c", script],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for_line(proc, "started", timeout=30)
        wait_until(lambda: _pid_in(pids), timeout=30, what="the command to start")
        yield proc, pids
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(shared, ignore_errors=True)


def _both(pids: pathlib.Path) -> tuple[int, int]:
    shell, sleeper = (int(x) for x in pids.read_text().split()[:2])
    return shell, sleeper


@_LOOPS
def test_a_supervised_command_restarts_and_stops_with_its_group(loop: str) -> None:
    with _supervisor(loop=loop) as (proc, pids):
        shell, sleeper = _both(pids)
        pids.unlink()
        os.kill(shell, signal.SIGKILL)
        wait_until(lambda: _pid_in(pids), timeout=30, what="the command to be restarted")
        # The dead command's background child went with its group.
        wait_until(lambda: _gone(sleeper), timeout=10, what="the old group to be killed")
        new_shell, new_sleeper = _both(pids)
        assert new_shell != shell
        proc.send_signal(signal.SIGINT)  # asyncio.run's KeyboardInterrupt -> stop()
        proc.wait(30)
        assert _gone(new_shell) and _gone(new_sleeper)


@_LOOPS
def test_a_supervised_command_dies_with_its_parent(loop: str) -> None:
    with _supervisor(loop=loop) as (proc, pids):
        shell, sleeper = _both(pids)
        try:
            proc.kill()  # no chance to stop it: PR_SET_PDEATHSIG does
            proc.wait(10)
            wait_until(lambda: _gone(shell), timeout=10, what="the command to die with its parent")
        finally:
            # The signal reaches the command, not what it started.
            with contextlib.suppress(ProcessLookupError):
                os.kill(sleeper, signal.SIGKILL)


@_LOOPS
def test_a_supervised_command_runs_as_its_user_and_still_dies_with_its_parent(loop: str) -> None:
    # Root becomes nobody; anyone else can only stay who they are.
    user = (65534, 65534) if os.geteuid() == 0 else (os.getuid(), os.getgid())
    with _supervisor(loop=loop, user=user) as (proc, pids):
        shell, sleeper, uid, gid = (int(x) for x in pids.read_text().split())
        assert (uid, gid) == user
        try:
            proc.kill()
            proc.wait(10)
            # A change of user clears the death signal unless set after it.
            wait_until(lambda: _gone(shell), timeout=10, what="the command to die with its parent")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(sleeper, signal.SIGKILL)
