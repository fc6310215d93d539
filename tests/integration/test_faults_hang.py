"""A hung instance (SIGSTOP for 20 s) under steady load does not stall
clients: requests forwarded to it are re-routed within the hop deadline, the
others avoid it at once, and after SIGCONT it leaves no duplicate copies.

The figures the fault matrix (docs/reliability.md) quotes are printed
(``pytest -s``); the assertions leave generous slack for a loaded machine.
"""

from __future__ import annotations

import pathlib
import signal
import time
from collections.abc import Iterator

import pytest
from tritonclient.utils import InferenceServerException

from tests.integration._etcd import EtcdServer
from tests.integration._load import Load, Sent
from tests.integration._mesh import Mesh, make_model, run_mesh, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODELS = [f"hang-{i}" for i in range(6)]
HANG_S = 20.0
DEADLINE_S = 5.0
REROUTE_SLACK_S = 4.0
"""The issue's figure is 2 s (the hop deadline is 1.5 s of a 5 s deadline);
this leaves room for a 2-core machine shared by other work."""


@pytest.fixture(scope="module")
def mesh(etcd: EtcdServer, work: pathlib.Path) -> Iterator[Mesh]:
    # No rate-based scale-up or load spreading: every copy beyond one would
    # be the hang's.
    no_scaling = {"scaleupRpmThreshold": 10**7, "rebalanceMinRpm": 10**7}
    with run_mesh(etcd, work / "mesh", mesh_settings=no_scaling) as running:
        yield running


def _spread(mesh: Mesh, model: pathlib.Path) -> dict[str, str]:
    """Register MODELS and load each with a first request from instance 0,
    which spreads them over the three (model -> its one holder)."""
    for name in MODELS:
        mesh.management(0).register(name, type="sklearn", path=model)
    for name in MODELS:
        mesh.infer(0, name)

    def holders() -> dict[str, set[str]]:
        return {name: mesh.loaded_on(0, name) for name in MODELS}

    # The copy records reach instance 0's mirror a moment after the loads.
    wait_until(lambda: all(len(h) == 1 for h in holders().values()), 10, f"{holders()}")
    return {name: next(iter(h)) for name, h in holders().items()}


def _report(label: str, sent: list[Sent]) -> None:
    slow = [s for s in sent if s.seconds > 1.0]
    longest = max((s.seconds for s in sent), default=0.0)
    print(
        f"\n{label}: {len(sent)} requests, {sum(1 for s in sent if not s.ok)} failed, "
        f"{len(slow)} took > 1 s, longest {longest:.2f} s"
    )


def _serves(mesh: Mesh, index: int, model: str) -> bool:
    """Whether ``index`` serves ``model`` (NOT_FOUND until its watch has
    brought it the registration)."""
    try:
        return mesh.infer(index, model).shape == (2,)
    except InferenceServerException as exc:
        assert "not registered" in exc.message(), exc.message()
        return False


def _duplicates(mesh: Mesh, index: int) -> dict[str, set[str]]:
    loaded = {name: mesh.loaded_on(index, name) for name in MODELS}
    return {name: holders for name, holders in loaded.items() if len(holders) > 1}


def test_a_hung_instance_stalls_no_client_and_leaves_no_duplicates(
    mesh: Mesh, work: pathlib.Path
) -> None:
    holders = _spread(mesh, make_model(work / "models" / "m.skops"))
    by_id = {inst.instance_id: i for i, inst in mesh.instances.items()}
    victim = next(by_id[h] for h in holders.values() if by_id[h] != 0)
    victim_id = mesh.instances[victim].instance_id
    assert any(h == victim_id for h in holders.values()), "some model lives only on the victim"
    senders = [i for i in mesh.instances if i != victim]
    proc = mesh.instances[victim].proc
    with Load(mesh, MODELS, senders, clients=4, deadline_s=DEADLINE_S) as load:
        time.sleep(1.0)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(HANG_S)
        finally:
            proc.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        time.sleep(3.0)
    during = [s for s in load.sent if stopped - DEADLINE_S <= s.started <= resumed]
    _report("during the hang", during)
    _report("after SIGCONT", load.since(resumed))
    assert load.failures == [], [str(s) for s in load.failures]
    slowest = max(during, key=lambda s: s.seconds)
    assert slowest.seconds < REROUTE_SLACK_S, f"a request was stalled: {slowest}"
    assert len(during) > 50, "the load kept running"

    # Back from the hang: its lease had gone and its models were reloaded
    # elsewhere; it rejoins and keeps no copy the others hold too.
    wait_until(lambda: not _duplicates(mesh, 0), 20, f"duplicates: {_duplicates(mesh, 0)}")
    log = (mesh.instances[victim].data_dir / "instance.log").read_text(errors="replace")
    print(
        f"no duplicate copies {time.monotonic() - resumed:.2f} s after SIGCONT; "
        f"the victim dropped {log.count('dropping it here')} copies reloaded elsewhere"
    )
    for name in MODELS:
        assert mesh.infer(victim, name).shape == (2,)
    assert not _duplicates(mesh, 0), _duplicates(mesh, 0)
    # Re-registered: a new model it loads itself is published under its
    # new lease, as the others see.
    mesh.management(0).register("after-hang", type="sklearn", path=work / "models" / "m.skops")
    wait_until(lambda: _serves(mesh, victim, "after-hang"), 20, "the victim sees the registration")
    wait_until(lambda: victim_id in mesh.loaded_on(0, "after-hang"), 10, "the victim re-registered")
