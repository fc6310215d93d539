"""SIGKILL of an instance's runtime child under steady load: requests sent
to that instance go to copies elsewhere while the runtime restarts (none
fails), and the instance reloads its models when the runtime is back.

The figures the fault matrix (docs/reliability.md) quotes are printed
(``pytest -s``).
"""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.integration._etcd import EtcdServer
from tests.integration._load import Load
from tests.integration._mesh import Mesh, make_model, run_mesh, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODELS = ["rt-0", "rt-1", "rt-2"]
VICTIM = 1


@pytest.fixture(scope="module")
def mesh(etcd: EtcdServer, work: pathlib.Path) -> Iterator[Mesh]:
    # Runtime children (as pickle needs); a low scale-up threshold gives
    # the loaded models copies on every instance.
    with run_mesh(
        etcd,
        work / "mesh",
        mesh_settings={"scaleupRpmThreshold": 30},
        runtime_settings={"host": "process", "restartBackoffInitialS": 0.2, "runAsUser": ""},
    ) as running:
        yield running


def _runtime_pid(mesh: Mesh, index: int) -> int | None:
    """The pid of the instance's one `meshserve runtime` child (None: none runs)."""
    runtimes = []
    for child in psutil.Process(mesh.instances[index].proc.pid).children(recursive=True):
        try:
            if "runtime" in child.cmdline():
                runtimes.append(child.pid)
        except psutil.Error:
            continue  # it exited (a zombie until reaped)
    return runtimes[0] if len(runtimes) == 1 else None


def test_a_killed_runtime_fails_no_request_for_models_with_a_copy_elsewhere(
    mesh: Mesh, work: pathlib.Path
) -> None:
    path = make_model(work / "models" / "m.skops")
    for name in MODELS:
        mesh.management(0).register(name, type="sklearn", path=path)
        # A fresh runtime child imports the model's library on its first
        # load: seconds on a busy machine, more than the load's deadline.
        mesh.infer(0, name, timeout=60)
    victim_id = mesh.instances[VICTIM].instance_id
    everywhere = {inst.instance_id for inst in mesh.instances.values()}
    with Load(mesh, MODELS, [VICTIM, 0, 2, VICTIM], clients=3, deadline_s=5.0) as load:
        wait_until(
            lambda: all(mesh.loaded_on(0, name) == everywhere for name in MODELS),
            30,
            "every model gains a copy on every instance",
        )
        child = _runtime_pid(mesh, VICTIM)
        assert child is not None
        killed = time.monotonic()
        psutil.Process(child).send_signal(signal.SIGKILL)
        wait_until(
            lambda: _runtime_pid(mesh, VICTIM) not in (None, child), 30, "the runtime restarts"
        )
        restarted = time.monotonic()
        time.sleep(3.0)  # the load goes on while the victim reloads its models
    window = load.since(killed)
    to_victim = [s for s in window if s.index == VICTIM]
    print(
        f"\nruntime SIGKILL: a new runtime process after {restarted - killed:.2f} s; "
        f"{len(window)} requests since the kill ({len(to_victim)} sent to that instance), "
        f"{len(load.failures)} failed, {sum(1 for s in window if s.seconds > 1.0)} took > 1 s, "
        f"longest {max((s.seconds for s in window), default=0.0):.2f} s"
    )
    assert load.failures == [], "\n".join(str(s) for s in load.failures)
    assert to_victim, "requests kept going to the instance whose runtime restarted"
    # It reloads the models it had.
    wait_until(
        lambda: all(victim_id in mesh.loaded_on(0, name) for name in MODELS),
        30,
        "the victim reloads its models",
    )
