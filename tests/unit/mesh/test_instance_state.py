"""An instance's lifecycle: STARTING -> SERVING -> LAME_DUCK -> DRAINING ->
STOPPED, one way."""

from __future__ import annotations

import pathlib

from meshserve._clock import ManualClock
from meshserve.mesh import Instance, InstanceState
from meshserve.mesh._instance_state import Lifecycle
from meshserve.registry import Registry
from meshserve.settings import CacheSettings, MeshSettings
from meshserve.store import SqliteStore
from tests.fakes import FakeRuntime


def test_states_move_forward_only() -> None:
    lifecycle = Lifecycle(started_ms=5)
    assert lifecycle.state is InstanceState.STARTING
    assert not lifecycle.ready and not lifecycle.leaving
    assert lifecycle.advance(InstanceState.SERVING)
    assert lifecycle.ready and not lifecycle.leaving
    assert lifecycle.advance(InstanceState.LAME_DUCK)
    # Not ready, others told it is leaving, but still taking what is placed here.
    assert not lifecycle.ready and lifecycle.leaving and not lifecycle.draining
    # A late "ready" must not make a lame duck ready again.
    assert not lifecycle.advance(InstanceState.SERVING)
    assert not lifecycle.ready
    assert lifecycle.advance(InstanceState.DRAINING)
    assert not lifecycle.ready and lifecycle.leaving and lifecycle.draining
    assert not lifecycle.advance(InstanceState.LAME_DUCK)
    assert not lifecycle.advance(InstanceState.SERVING)
    assert lifecycle.state is InstanceState.DRAINING
    assert lifecycle.advance(InstanceState.STOPPED)
    assert not lifecycle.advance(InstanceState.DRAINING)
    assert lifecycle.state is InstanceState.STOPPED and lifecycle.leaving


def test_an_instance_may_stop_without_draining() -> None:
    lifecycle = Lifecycle(started_ms=0)
    assert lifecycle.advance(InstanceState.STOPPED)
    assert not lifecycle.ready


async def test_an_instance_goes_through_its_states(tmp_path: pathlib.Path) -> None:
    async with (
        SqliteStore.open(tmp_path / "store.db") as store,
        Registry.open(store) as registry,
    ):
        opened = Instance.open(
            instance_id="i-1",
            registry=registry,
            runtime=FakeRuntime(),
            settings=CacheSettings(),
            mesh=MeshSettings(lease_ttl_s=2.0),
            clock=ManualClock(),
        )
        seen: list[InstanceState] = []
        async with opened as instance:
            seen.append(instance.state)
            assert not instance.server_ready()
            assert not instance.describe().shutting_down
            instance.mark_ready()
            seen.append(instance.state)
            assert instance.server_ready()
            await instance.lame_duck()
            seen.append(instance.state)
            assert not instance.server_ready()
            # Others see it leaving at once (published now, not at the next
            # interval): they route new work elsewhere when they can.
            assert instance.describe().shutting_down
            published = registry.instance("i-1")
            assert published is not None and published.shutting_down
            instance.mark_ready()  # too late: it stays a lame duck
            seen.append(instance.state)
            await instance.drain()
            seen.append(instance.state)
            assert not instance.server_ready()
            assert instance.describe().shutting_down
            instance.mark_ready()  # too late: it stays draining
            seen.append(instance.state)
        seen.append(instance.state)
        assert seen == [
            InstanceState.STARTING,
            InstanceState.SERVING,
            InstanceState.LAME_DUCK,
            InstanceState.LAME_DUCK,
            InstanceState.DRAINING,
            InstanceState.DRAINING,
            InstanceState.STOPPED,
        ]
