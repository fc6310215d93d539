"""`meshserve up` as a separate process, for the integration tests of the instance.

:func:`run_up` starts ``python -m meshserve up`` on free loopback ports in a
data dir, waits for its ``ready`` line and always stops it (SIGTERM, then
SIGKILL; runtime children left behind are killed by pid). The rest are thin
helpers over real clients: tritonclient gRPC and HTTP for inference, the
generated stubs for ``mmesh.ModelMesh`` and ``meshserve.admin.v1.Admin``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
import numpy as np
import psutil
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import yaml

from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol._pb import model_mesh_pb2_grpc as mm_grpc
from tests._examples import make_models_module, model_type
from tests._processes import NO_LAME_DUCK, LineTimeout, read_until, stop_process

__all__ = [
    "ONNX_INPUT",
    "TABULAR_INPUT",
    "Management",
    "Registration",
    "Up",
    "grpc_outputs",
    "http_outputs",
    "input_name",
    "iris_grpc_input",
    "iris_http_input",
    "make_forest",
    "make_slow_onnx",
    "metric_total",
    "run_up",
    "wait_until",
]

T = TypeVar("T")

ONNX_INPUT = "float_input"
TABULAR_INPUT = "input-0"
START_TIMEOUT_S = 60.0
_READY = re.compile(r"meshserve up: ready")
_GRPC = re.compile(r"meshserve up: gRPC (\S+)")
_REST = re.compile(r"meshserve up: REST https?://(\S+)/v2")


@dataclass(frozen=True, slots=True)
class Registration:
    """One entry of a ``--register`` file."""

    name: str
    type: str
    path: pathlib.Path
    load_now: bool = False

    @classmethod
    def example(cls, name: str, path: pathlib.Path, *, as_name: str | None = None) -> Registration:
        """An example model (``tests._examples``), optionally under another name."""
        return cls(name=as_name or name, type=model_type(name), path=path)


class Management:
    """ModelMesh's management API and meshserve's admin API on one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.mesh = mm_grpc.ModelMeshStub(self.channel)
        self.admin = admin_grpc.AdminStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def register(
        self,
        model_id: str,
        *,
        type: str,
        path: pathlib.Path | str,
        load_now: bool = False,
        sync: bool = False,
    ) -> mm.ModelStatusInfo:
        reply: mm.ModelStatusInfo = self.mesh.registerModel(
            mm.RegisterModelRequest(
                modelId=model_id,
                modelInfo=mm.ModelInfo(type=type, path=str(path)),
                loadNow=load_now,
                sync=sync,
            ),
            timeout=60,
        )
        return reply

    def status(self, model_id: str) -> mm.ModelStatusInfo:
        reply: mm.ModelStatusInfo = self.mesh.getModelStatus(
            mm.GetStatusRequest(modelId=model_id), timeout=10
        )
        return reply

    def status_name(self, model_id: str) -> str:
        return str(mm.ModelStatusInfo.ModelStatus.Name(self.status(model_id).status))

    def models(self) -> dict[str, admin.ModelSummary]:
        """ListModels, keyed by model id."""
        reply = self.admin.ListModels(admin.ListModelsRequest(), timeout=10)
        return {m.modelId: m for m in reply.models}

    def vmodel(self, vmodel_id: str, *, owner: str = "") -> mm.VModelStatusInfo:
        reply: mm.VModelStatusInfo = self.mesh.getVModelStatus(
            mm.GetVModelStatusRequest(vModelId=vmodel_id, owner=owner), timeout=10
        )
        return reply


@dataclass(frozen=True, slots=True)
class Up:
    """A running `meshserve up` and where it answers."""

    proc: subprocess.Popen[bytes]
    data_dir: pathlib.Path
    grpc: str
    """host:port of the gRPC port (inference and management)."""
    rest: str
    """host:port of the REST port (tritonclient.http's form)."""
    log: pathlib.Path
    management: Management

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def rest_url(self) -> str:
        return f"http://{self.rest}"

    def grpc_client(self) -> triton_grpc.InferenceServerClient:
        return triton_grpc.InferenceServerClient(self.grpc)

    def http_client(self) -> triton_http.InferenceServerClient:
        return triton_http.InferenceServerClient(self.rest)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _write_register_file(path: pathlib.Path, models: Sequence[Registration]) -> None:
    entries = [
        {"name": m.name, "type": m.type, "path": str(m.path), "loadNow": m.load_now} for m in models
    ]
    path.write_text(yaml.safe_dump({"models": entries}))


def _read_until_ready(proc: subprocess.Popen[bytes], log: pathlib.Path) -> list[str]:
    """stdout lines up to the ready line (all of them: one read may hold several)."""
    try:
        return read_until(proc, _READY, START_TIMEOUT_S)
    except LineTimeout as timeout:
        lines = timeout.lines
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(1)  # closed stdout: it is exiting; report its code
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
    raise AssertionError(
        f"`meshserve up` did not report ready (exit code {proc.poll()}; "
        f"waited at most {START_TIMEOUT_S} s)\n"
        f"stdout:\n" + "\n".join(lines) + f"\nlog:\n{tail}"
    )


def _line(lines: list[str], pattern: re.Pattern[str]) -> str:
    for line in lines:
        match = pattern.search(line)
        if match:
            return match.group(1)
    raise AssertionError(f"no line matching {pattern.pattern!r} in {lines}")


def _hermetic_env(env: Mapping[str, str] | None) -> dict[str, str]:
    # Settings come only from what the test passes, never the caller's shell.
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHSERVE_")}
    return {**base, **NO_LAME_DUCK, **(env or {})}


@contextlib.contextmanager
def run_up(
    data_dir: pathlib.Path,
    *,
    register: Sequence[Registration] = (),
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Up]:
    """Run `meshserve up` on free loopback ports until the block ends.

    Its log (stderr) goes to ``data_dir/up-<n>.log``; a restart on the same
    data dir gets a new log file.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [
        sys.executable,
        "-m",
        "meshserve",
        "up",
        "--data-dir",
        str(data_dir),
        "--grpc-port",
        "0",
        "--rest-port",
        "0",
        "--metrics-port",
        "0",
        *args,
    ]
    if register:
        register_file = data_dir.parent / f"{data_dir.name}-register.yaml"
        _write_register_file(register_file, register)
        command += ["--register", str(register_file)]
    log = data_dir / f"up-{len(list(data_dir.glob('up-*.log')))}.log"
    children: set[psutil.Process] = set()
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
            env=_hermetic_env(env),
        )
        management: Management | None = None
        try:
            lines = _read_until_ready(proc, log)
            management = Management(_line(lines, _GRPC))
            up = Up(
                proc=proc,
                data_dir=data_dir,
                grpc=_line(lines, _GRPC),
                rest=_line(lines, _REST),
                log=log,
                management=management,
            )
            yield up
        finally:
            if management is not None:
                management.close()
            with contextlib.suppress(psutil.Error):
                children = set(psutil.Process(proc.pid).children(recursive=True))
            stop_process(proc)
            _kill_leftovers(children)
            if proc.stdout is not None:
                proc.stdout.close()


def _kill_leftovers(children: set[psutil.Process]) -> None:
    """Kill runtime children that outlived their `up` (only if it was killed)."""
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.kill()
    psutil.wait_procs(list(children), timeout=5)


def wait_until(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.05
) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def metric_total(metrics_url: str, name: str) -> float:
    """The sum of a Prometheus metric's samples over every label set."""
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )


def input_name(name: str) -> str:
    """The input an example model takes (by its example name)."""
    return ONNX_INPUT if model_type(name) == "onnx" else TABULAR_INPUT


def _typed(name: str, rows: np.ndarray) -> tuple[str, str, np.ndarray]:
    if model_type(name) == "onnx":
        return ONNX_INPUT, "FP32", rows.astype(np.float32)
    return TABULAR_INPUT, "FP64", rows.astype(np.float64)


def iris_grpc_input(name: str, rows: np.ndarray) -> triton_grpc.InferInput:
    """The input tensor for the example model ``name`` (onnx: FP32, others FP64)."""
    tensor_name, datatype, data = _typed(name, rows)
    tensor = triton_grpc.InferInput(tensor_name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return tensor


def iris_http_input(name: str, rows: np.ndarray, *, binary: bool) -> triton_http.InferInput:
    tensor_name, datatype, data = _typed(name, rows)
    tensor = triton_http.InferInput(tensor_name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data, binary_data=binary)
    return tensor


def grpc_outputs(result: triton_grpc.InferResult) -> dict[str, np.ndarray]:
    response = result.get_response()
    return {out.name: result.as_numpy(out.name) for out in response.outputs}


def http_outputs(result: triton_http.InferResult) -> dict[str, np.ndarray]:
    response = result.get_response()
    return {out["name"]: result.as_numpy(out["name"]) for out in response["outputs"]}


def make_forest(path: pathlib.Path, *, trees: int) -> pathlib.Path:
    """A .skops random forest on iris; its load takes about 3 ms a tree
    (skops audits every object it loads)."""
    import skops.io
    from sklearn.ensemble import RandomForestClassifier

    rows, labels = make_models_module().iris()
    forest = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=2)
    skops.io.dump(forest.fit(rows, labels), path)
    return path


def make_slow_onnx(path: pathlib.Path, *, nodes: int) -> pathlib.Path:
    """An onnx model (input ``float_input`` [N, 4] FP32) that is quick to write
    and slow to load: a chain of ``nodes`` constant Adds, which onnxruntime's
    constant folding takes superlinear time over (20,000 nodes: about 3 s,
    30,000: about 7 s on these machines)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    chain = []
    constants = []
    previous = ONNX_INPUT
    for i in range(nodes):
        constants.append(numpy_helper.from_array(np.full(4, i % 7, np.float32), f"c{i}"))
        output = "out" if i == nodes - 1 else f"t{i}"
        chain.append(helper.make_node("Add", [previous, f"c{i}"], [output]))
        previous = output
    graph = helper.make_graph(
        chain,
        "slow",
        [helper.make_tensor_value_info(ONNX_INPUT, TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, 4])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
