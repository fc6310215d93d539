"""ModelMesh's second copy: a single-copy model used again a while after its
last use gets a copy on another instance (here the "while" is 1 to 30 s)."""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.integration._etcd import run_etcd
from tests.integration._mesh import make_model, run_mesh, wait_until

pytestmark = pytest.mark.timeout(120)


def test_a_model_used_again_after_a_while_gets_a_second_copy(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    with (
        run_etcd() as etcd,
        run_mesh(
            etcd,
            tmp_path / "mesh",
            instances=2,
            mesh_settings={"secondCopyMinAgeS": 1.5, "secondCopyMaxAgeS": 30},
        ) as mesh,
    ):
        mesh.management(0).register("again", type="sklearn", path=model)
        mesh.infer(0, "again")
        mesh.infer(0, "again")  # used again at once: no second copy
        time.sleep(1.0)
        assert len(mesh.loaded_on(0, "again")) == 1
        time.sleep(1.0)
        mesh.infer(0, "again")  # 2 s after its last use
        wait_until(lambda: len(mesh.loaded_on(0, "again")) == 2, 20, "a second copy")


def test_the_reaper_reloads_a_model_whose_instance_died(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    with run_etcd() as etcd, run_mesh(etcd, tmp_path / "mesh", instances=3) as mesh:
        # Instance 0 starts first, so it leads (and reaps) unless it fails.
        management = mesh.management(0)
        names = [f"orphan-{i}" for i in range(4)]
        for name in names:
            management.register(name, type="sklearn", path=model, load_now=True, sync=True)
        by_id = {inst.instance_id: index for index, inst in mesh.instances.items()}
        held = {name: by_id[next(iter(mesh.loaded_on(0, name)))] for name in names}
        victims = [name for name, index in held.items() if index != 0]
        assert victims, f"all on instance 0: {held}"
        victim = held[victims[0]]
        dead = mesh.instances[victim].instance_id
        mesh.kill(victim)
        lost = [name for name, index in held.items() if index == victim]
        # No request is sent: the leader notices the lost copies and reloads them.
        wait_until(
            lambda: all(
                (copies := mesh.loaded_on(0, name)) and dead not in copies for name in lost
            ),
            30,
            f"{lost} reloaded elsewhere",
        )
