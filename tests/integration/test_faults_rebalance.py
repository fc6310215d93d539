"""Two of three instances restart under load: the restarted ones take
copies of the hot models (load spreading), within a minute, while a cold
model stays with its one copy."""

from __future__ import annotations

import pathlib
import time

import pytest

from tests.integration._etcd import run_etcd
from tests.integration._load import Load
from tests.integration._mesh import Mesh, make_model, run_mesh, wait_until

pytestmark = pytest.mark.timeout(240)

HOT = [f"hot-{i}" for i in range(6)]
COLD = "cold"
SPREAD_BOUND_S = 60.0


def _holders(mesh: Mesh) -> dict[str, set[str]]:
    return {m: mesh.loaded_on(0, m) for m in [*HOT, COLD]}


def test_restarted_instances_take_copies_of_hot_models(work: pathlib.Path) -> None:
    model = make_model(work / "models" / "model.skops")
    with (
        run_etcd() as etcd,
        run_mesh(
            etcd,
            work / "mesh",
            # Only load spreading adds copies here (~2000 rpm per model).
            mesh_settings={"scaleupRpmThreshold": 10**9, "rebalanceMinRpm": 120},
        ) as mesh,
    ):
        for name in [*HOT, COLD]:
            mesh.management(0).register(name, type="sklearn", path=model, load_now=True, sync=True)
        survivor = mesh.instances[0].instance_id

        def running(n: int) -> int:
            up = [i for i in (0, 1, 2) if i in mesh.instances]
            return up[n % len(up)]

        with Load(mesh, HOT, target=running, clients=4, deadline_s=10):
            time.sleep(1)
            mesh.kill(1)
            mesh.kill(2)
            # The survivor reloads what the others held: everything is there.
            wait_until(
                lambda: all(h == {survivor} for h in _holders(mesh).values()),
                30,
                "every model on the survivor alone",
            )
            mesh.start(1)
            mesh.start(2)
            back_at = time.monotonic()
            restarted = {mesh.instances[i].instance_id for i in (1, 2)}

            def spread() -> bool:
                taken = set().union(*(_holders(mesh)[m] for m in HOT)) & restarted
                return taken == restarted

            wait_until(spread, SPREAD_BOUND_S, "both restarted instances hold hot models")
            window = time.monotonic() - back_at
            time.sleep(3)
            holders = _holders(mesh)
        print(f"restarted instances took hot models {window:.1f} s after starting: {holders}")
        # Bounded: at most a copy per instance, the cold model untouched.
        assert holders[COLD] == {survivor}
        assert all(len(holders[m]) <= 3 for m in HOT)
        assert sum(len(holders[m]) for m in HOT) > len(HOT)
