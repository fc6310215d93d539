"""Dropping root for real, in child processes, read back from /proc.

Meaningful as root (the tests' branch for root checks the drop); run as
another user they check that nothing is dropped and nothing breaks.
"""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
import pytest_asyncio

import meshserve
from meshserve.errors import PreconditionFailedError
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, Tensor
from meshserve.runtime import ModelSpec, ProcessRuntime
from meshserve.security import capabilities
from meshserve.settings import RuntimeSettings
from tests._examples import assert_outputs_match, iris_rows, library_predictions
from tests.integration._mesh import make_model
from tests.integration._resources import ISVC_ON_RUNTIME, apply, status_field, wait_status
from tests.integration._unprivileged import (
    Interpreter,
    NoInterpreterError,
    interpreter_for,
    readable_tree,
)
from tests.integration._up import run_up

pytestmark = pytest.mark.integration

AS_ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody")
MODEL = "xgboost-json"

_CHILD = """
import json, os, sys
from meshserve.security import drop_privileges
dropped = drop_privileges(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
again = drop_privileges(sys.argv[1])
try:
    os.setuid(0)
    regained = True
except PermissionError:
    regained = False
with open("/proc/self/status") as status:
    text = status.read()
print(json.dumps({"dropped": dropped, "again": again, "regained": regained, "status": text}))
"""


def _proc_status_field(status: str, name: str) -> list[str]:
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.split()
    raise AssertionError(f"{name} not in /proc status")


def _run_child(user: str) -> dict[str, object]:
    # The child imports all it needs before dropping, so it needs no
    # interpreter the target user could read.
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, user], capture_output=True, text=True, timeout=60, check=True
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("user", ["nobody", "54321"])
def test_a_child_drops_root_for_good(user: str) -> None:
    report = _run_child(user)
    status = str(report["status"])
    if not AS_ROOT:
        assert report["dropped"] is False
        assert int(_proc_status_field(status, "Uid")[1]) == os.geteuid()
        return
    uid = NOBODY.pw_uid if user == "nobody" else int(user)
    gid = NOBODY.pw_gid if user == "nobody" else int(user)
    assert report["dropped"] is True
    assert report["again"] is False  # no longer root: a second call does nothing
    assert report["regained"] is False
    assert _proc_status_field(status, "Uid") == [str(uid)] * 4
    assert _proc_status_field(status, "Gid") == [str(gid)] * 4
    assert _proc_status_field(status, "Groups") == []
    assert _proc_status_field(status, "NoNewPrivs") == ["1"]
    assert capabilities(status) == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0
    )


# -- the out-of-process runtime ------------------------------------------


@pytest.fixture(scope="module")
def scratch() -> Iterator[pathlib.Path]:
    """A temp tree other users can read (pytest's tmp dirs are private)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix="meshserve-priv-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def interpreter(scratch: pathlib.Path) -> Interpreter:
    if not AS_ROOT:
        return Interpreter(python=sys.executable)
    try:
        return interpreter_for("nobody", scratch)
    except NoInterpreterError as exc:
        # The environment itself is private (a venv in a 0700 directory):
        # what the runtime then says is checked below, whatever the machine.
        pytest.skip(f"no interpreter nobody can run here: {exc}")


@pytest.fixture
def private_meshserve(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory only root can enter, from which meshserve imports (as a
    clone in a 0700 temporary directory would): for PYTHONPATH."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "meshserve").symlink_to(pathlib.Path(meshserve.__file__).parent)
    return private


@pytest.fixture(scope="module")
def readable_model(scratch: pathlib.Path, example_models: dict[str, pathlib.Path]) -> pathlib.Path:
    target = scratch / "models" / example_models[MODEL].name
    target.parent.mkdir()
    shutil.copy(example_models[MODEL], target)
    readable_tree(scratch)
    return target


@pytest_asyncio.fixture
async def runtime(interpreter: Interpreter) -> AsyncIterator[ProcessRuntime]:
    host = ProcessRuntime(
        settings=RuntimeSettings(preload_libraries=False),
        python=interpreter.python,
        extra_env=interpreter.env,
    )
    async with host:
        yield host


def _status_of(pid: int) -> str:
    return pathlib.Path(f"/proc/{pid}/status").read_text()


async def test_the_runtime_child_runs_unprivileged_and_still_serves(
    runtime: ProcessRuntime, readable_model: pathlib.Path
) -> None:
    assert runtime.pid is not None and runtime.socket_path is not None
    status = _status_of(runtime.pid)
    uid = NOBODY.pw_uid if AS_ROOT else os.getuid()
    assert int(_proc_status_field(status, "Uid")[1]) == uid  # effective
    assert {int(v) for v in _proc_status_field(status, "Uid")} == {uid}
    directory = runtime.socket_path.parent.stat()
    assert stat.S_IMODE(directory.st_mode) == 0o700
    assert directory.st_uid == uid
    if AS_ROOT:
        assert capabilities(status)["CapEff"] == 0
        assert capabilities(status)["CapBnd"] == 0
        assert runtime.socket_path.stat().st_uid == uid

    rows = iris_rows(4)
    await runtime.load(
        ModelSpec(model_id=MODEL, model_type="xgboost", model_path=str(readable_model))
    )
    response = await runtime.infer(
        MODEL, InferenceRequest(model_name=MODEL, inputs=[Tensor("input-0", Datatype.FP64, rows)])
    )
    got = {tensor.name: np.asarray(tensor.data) for tensor in response.outputs}
    assert_outputs_match(got, library_predictions(MODEL, readable_model, rows))


async def test_a_user_that_cannot_read_the_environment_is_named_with_what_to_do(
    private_meshserve: pathlib.Path,
) -> None:
    host = ProcessRuntime(
        settings=RuntimeSettings(preload_libraries=False),
        extra_env={"PYTHONPATH": str(private_meshserve)},
    )
    if not AS_ROOT:  # nothing is dropped, so nothing goes out of reach
        async with host:
            assert host.pid is not None
        return
    with pytest.raises(PreconditionFailedError) as refused:
        async with host:
            pass
    message = str(refused.value)
    assert "runtime.runAsUser 'nobody'" in message, message
    # What it cannot read (here the Python environment, or else meshserve).
    assert re.search(r"cannot read (the Python standard library|the installed packages|"
                     r"meshserve) at /", message), message  # fmt: skip
    assert "set runtime.runAsUser to a user that can" in message, message
    assert host.pid is None  # refused before any child ran


@pytest.mark.timeout(240)
def test_a_pool_whose_user_cannot_read_the_environment_reports_why(
    private_meshserve: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    if not AS_ROOT:
        pytest.skip("only root drops to runtime.runAsUser")
    pvc = tmp_path / "pvc"
    make_model(pvc / "claim" / "model.skops")
    # `up` (root) imports meshserve from there; its pool instances' runtime
    # children would become nobody, who cannot.
    env = {
        "PYTHONPATH": str(private_meshserve),
        "MESHSERVE_CONTROL__PICKLE_NAMESPACES": '["default"]',
        "MESHSERVE_CONTROL__RESTART_BACKOFF_INITIAL_S": "0.2",
    }
    with run_up(tmp_path / "data", args=["--pvc-root", str(pvc)], env=env) as up:
        isvc = ISVC_ON_RUNTIME.format(
            name="unreadable",
            format="sklearn",
            uri="pvc://claim/model.skops",
            runtime="meshserve-pickle",
        )
        assert apply(up, isvc).returncode == 0
        status = wait_status(up, "unreadable", timeout=120, activeModelState="FailedToLoad")
        failure = status_field(status, "lastFailureInfo")
        assert failure["reason"] == "RuntimeUnhealthy", status
        assert "runtime.runAsUser 'nobody'" in failure["message"], failure
        assert "cannot read" in failure["message"], failure


async def test_an_empty_run_as_user_keeps_the_parents_user() -> None:
    host = ProcessRuntime(settings=RuntimeSettings(run_as_user="", preload_libraries=False))
    async with host:
        assert host.pid is not None
        assert int(_proc_status_field(_status_of(host.pid), "Uid")[1]) == os.geteuid()
