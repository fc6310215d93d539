"""Three instances as separate processes on a real etcd: one model cache.

The tests share one mesh and run in file order; the last ones stop
instances (SIGKILL, SIGTERM) and start replacements.
"""

from __future__ import annotations

import pathlib
import re
import time
from collections.abc import Iterator

import pytest
from tritonclient.utils import InferenceServerException

from tests._processes import meshserve
from tests.integration._etcd import EtcdServer
from tests.integration._load import Load
from tests.integration._mesh import Mesh, make_model, run_mesh, wait_until
from tests.unit.metrics.test_metrics import CLUSTER_METRICS, MODELMESH_METRICS

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def model(work: pathlib.Path) -> pathlib.Path:
    return make_model(work / "models" / "model.skops")


@pytest.fixture(scope="module")
def mesh(etcd: EtcdServer, work: pathlib.Path) -> Iterator[Mesh]:
    with run_mesh(etcd, work / "mesh", capacity_bytes=2**20) as running:
        yield running


def test_a_request_to_any_instance_reaches_a_model_loaded_on_another(
    mesh: Mesh, model: pathlib.Path
) -> None:
    status = mesh.management(0).register(
        "alpha", type="sklearn", path=model, load_now=True, sync=True
    )
    assert status.status == status.LOADED
    (holder,) = mesh.loaded_on(0, "alpha")
    for index in range(3):
        assert mesh.infer(index, "alpha").shape == (2,)
    # Served by forwarding: still the one copy, on the same instance.
    assert mesh.loaded_on(1, "alpha") == {holder}
    assert mesh.loaded_on(2, "alpha") == {holder}


def test_new_models_spread_over_the_instances(mesh: Mesh, model: pathlib.Path) -> None:
    names = [f"spread-{i}" for i in range(6)]
    for name in names:
        mesh.management(0).register(name, type="sklearn", path=model)
    for name in names:
        mesh.infer(0, name)  # every first request arrives at instance 0
    holders = [mesh.loaded_on(0, name) for name in names]
    assert all(len(h) == 1 for h in holders), holders
    assert len(set.union(*holders)) == 3, f"all on {set.union(*holders)}"


def test_an_unregistered_model_is_not_found_and_an_unknown_type_fails_clearly(
    mesh: Mesh, model: pathlib.Path
) -> None:
    with pytest.raises(InferenceServerException, match="not registered"):
        mesh.infer(1, "nobody-registered-this")
    mesh.management(0).register("weird", type="no-such-format", path=model)
    with pytest.raises(InferenceServerException) as failure:
        mesh.infer(2, "weird")
    assert "no-such-format" in str(failure.value)
    mesh.infer(2, "alpha")  # and the mesh keeps serving


def test_a_hot_model_gains_copies_and_loses_them_when_cold_and_space_is_short(
    mesh: Mesh, model: pathlib.Path, etcd: EtcdServer, work: pathlib.Path
) -> None:
    with meshserve(
        ["config", "set", "scaleup_rpm_threshold", "60", "--store", f"etcd://{etcd.endpoint}"]
    ) as proc:
        assert proc.wait(30) == 0
    mesh.management(0).register("hot", type="sklearn", path=model, load_now=True, sync=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(mesh.loaded_on(0, "hot")) < 2:
        for index in range(3):
            mesh.infer(index, "hot")
    assert len(mesh.loaded_on(0, "hot")) >= 2, "no second copy under load"
    # Cold now, and the mesh fills up: extra copies go, one stays.
    with meshserve(
        ["config", "set", "scaleup_rpm_threshold", "100000", "--store", f"etcd://{etcd.endpoint}"]
    ) as proc:
        assert proc.wait(30) == 0
    filler = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(mesh.loaded_on(0, "hot")) > 1:
        name = f"filler-{filler}"
        filler += 1
        mesh.management(0).register(name, type="sklearn", path=model)
        mesh.infer(0, name)
    # The extra copy went (removed as an extra copy, or evicted as the
    # least recently used); the model is still served.
    assert len(mesh.loaded_on(0, "hot")) <= 1
    mesh.infer(1, "hot")


def test_each_modelmesh_metric_is_present_and_moving(mesh: Mesh) -> None:
    texts = [mesh.metrics_text(i) for i in range(3)]
    for name in (*MODELMESH_METRICS, *CLUSTER_METRICS):
        assert any(re.search(rf"^{name}(_count|_total)?[ {{]", t, re.M) for t in texts), name

    def total(name: str) -> float:
        values = 0.0
        for index in range(3):
            for line in mesh.metrics_text(index).splitlines():
                if re.match(rf"{name}(_count)?( |{{)", line):
                    values += float(line.rsplit(" ", 1)[1])
        return values

    moving = (
        "modelmesh_invoke_model_milliseconds",
        "modelmesh_api_request_milliseconds",
        "modelmesh_request_size_bytes",
        "modelmesh_response_size_bytes",
        "modelmesh_cache_miss_milliseconds",
        "modelmesh_loadmodel_milliseconds",
        "modelmesh_loading_queue_delay_milliseconds",
        "modelmesh_model_sizing_milliseconds",
        "modelmesh_loaded_model_size_bytes",
    )
    before = {name: total(name) for name in moving}
    mesh.management(0).register(
        "metered", type="sklearn", path=str(mesh.work.parent / "models" / "model.skops")
    )
    for index in range(3):
        mesh.infer(index, "alpha")
        mesh.infer(0, "metered")
    after = {name: total(name) for name in moving}
    assert [n for n in moving if after[n] <= before[n]] == []
    # Evictions and unloads happened while the hot-model test filled the mesh.
    assert total("modelmesh_age_at_eviction_milliseconds") > 0
    assert total("modelmesh_unloadmodel_milliseconds") > 0
    used = [
        float(m.group(1))
        for t in texts
        if (m := re.search(r"^modelmesh_instance_used_bytes\S* (\S+)$", t, re.M))
    ]
    assert any(u > 0 for u in used)


def test_log_level_and_last_use_reach_every_instance(mesh: Mesh, etcd: EtcdServer) -> None:
    with meshserve(
        ["config", "set", "logger_level", "debug", "--store", f"etcd://{etcd.endpoint}"]
    ) as proc:
        assert proc.wait(30) == 0
    logs = [inst.data_dir / "instance.log" for inst in mesh.instances.values()]
    wait_until(
        lambda: all("log level set to DEBUG" in log.read_text() for log in logs),
        10,
        "every instance applies logger_level",
    )
    mesh.infer(0, "alpha")
    (holder,) = mesh.loaded_on(0, "alpha")
    others = [i for i, inst in mesh.instances.items() if inst.instance_id != holder]

    def recent_everywhere() -> bool:
        now_ms = time.time() * 1000
        return all(
            now_ms - mesh.management(i).models()["alpha"].lastUsedTime < 60_000 for i in others
        )

    # The holder writes the last use into the model record.
    wait_until(recent_everywhere, 10, "last use published to the registry")


def test_a_vmodel_transition_under_load_fails_no_request(mesh: Mesh, model: pathlib.Path) -> None:
    other = make_model(model.parent / "other.skops", seed=1)
    management = mesh.management(1)
    management.register("v-one", type="sklearn", path=model, load_now=True, sync=True)
    from meshserve.protocol._pb import model_mesh_pb2 as mm

    management.mesh.setVModel(
        mm.SetVModelRequest(vModelId="vm", targetModelId="v-one", sync=True), timeout=30
    )
    with Load(mesh, ["vm"], [0, 1, 2]) as loop:
        time.sleep(0.5)
        management.mesh.setVModel(
            mm.SetVModelRequest(
                vModelId="vm",
                targetModelId="v-two",
                modelInfo=mm.ModelInfo(type="sklearn", path=str(other)),
                autoDeleteTargetModel=True,
            ),
            timeout=30,
        )
        wait_until(lambda: management.vmodel("vm").activeModelId == "v-two", 30, "vmodel switched")
        time.sleep(0.5)
    assert loop.ok > 20
    assert loop.failures == [], [str(s) for s in loop.failures]


def test_etcd_restart_under_load_keeps_loaded_models_serving(
    mesh: Mesh, model: pathlib.Path, etcd: EtcdServer
) -> None:
    with Load(mesh, ["alpha", "spread-0", "spread-1"], [0, 1, 2]) as loop:
        time.sleep(0.5)
        etcd.restart()
        time.sleep(1.0)
    assert loop.failures == [], [str(s) for s in loop.failures]
    assert loop.ok > 20

    def registers() -> bool:
        try:
            mesh.management(0).register("after-etcd", type="sklearn", path=model)
        except Exception:
            return False
        return True

    wait_until(registers, 30, "registration works again")

    def served_elsewhere() -> bool:
        # Instance 2 learns of the registration once its watch has resumed.
        try:
            return mesh.infer(2, "after-etcd").shape == (2,)
        except InferenceServerException:
            return False

    wait_until(served_elsewhere, 30, "the other instances' watches resume")


def test_sigkill_one_instance_under_load_then_everything_is_served_again(
    mesh: Mesh,
) -> None:
    models = ["alpha", "spread-0", "spread-1", "spread-2", "spread-3", "spread-4", "spread-5"]
    held = {
        index: [m for m in models if mesh.instances[index].instance_id in mesh.loaded_on(0, m)]
        for index in (1, 2)
    }
    victim = max(held, key=lambda index: len(held[index]))
    assert held[victim], "the victim holds models"
    victim_id = mesh.instances[victim].instance_id
    senders = [i for i in mesh.instances if i != victim]
    with Load(mesh, models, senders) as loop:
        time.sleep(0.5)
        mesh.kill(victim)
        time.sleep(5.0)  # the recovery window: the lease (2 s) expires
        settled = len(loop.failures)
        ok_before = loop.ok
        time.sleep(3.0)
    assert loop.ok > ok_before, "requests kept succeeding after recovery"
    assert len(loop.failures) == settled, loop.failures[settled:]
    for name in models:
        assert mesh.infer(0, name).shape == (2,)
        assert victim_id not in mesh.copies(0, name)
    mesh.start(victim)  # the next test starts from three instances again


def test_sigterm_drains_without_failed_requests(mesh: Mesh) -> None:
    mesh.start(3)
    models = ["alpha", "spread-0", "spread-1", "spread-2", "spread-3", "spread-4"]
    for name in models:
        mesh.infer(3, name)
    by_id = {inst.instance_id: i for i, inst in mesh.instances.items()}
    held = {
        name: by_id[holder]
        for name in models
        for holder in mesh.loaded_on(0, name)
        if by_id.get(holder, 0) != 0
    }
    assert held, "some model is loaded on an instance other than 0"
    victim = next(iter(held.values()))
    moved = [name for name, index in held.items() if index == victim]
    senders = [i for i in mesh.instances if i != victim]
    with Load(mesh, models, senders) as loop:
        time.sleep(0.5)
        assert mesh.terminate(victim) == 0
        time.sleep(1.0)
    assert loop.failures == [], [str(s) for s in loop.failures]
    assert loop.ok > 20
    victim_id = next(k for k, v in by_id.items() if v == victim)
    for name in moved:
        loaded = mesh.loaded_on(0, name)
        assert loaded and victim_id not in loaded, f"{name} was not moved: {loaded}"
