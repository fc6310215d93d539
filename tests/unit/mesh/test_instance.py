"""The instance's semantics over a real SQLite store and a scripted runtime."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import numpy as np
import pytest

from meshserve import errors
from meshserve._clock import ManualClock
from meshserve.mesh import Instance, ModelState, VModelState
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, Tensor
from meshserve.protocol.routing import RoutingHeaders
from meshserve.registry import CopyState, Registry
from meshserve.settings import CacheSettings, MeshSettings
from meshserve.store import SqliteStore
from tests.fakes import FakeModel, FakeRuntime

KB = 1024
OpenInstance = Callable[..., AbstractAsyncContextManager[Instance]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(capacity=1000 * KB)


@pytest.fixture
def open_instance(tmp_path: pathlib.Path, runtime: FakeRuntime, clock: ManualClock) -> OpenInstance:
    @asynccontextmanager
    async def opener(expiry_s: float = 900.0) -> AsyncIterator[Instance]:
        async with (
            SqliteStore.open(tmp_path / "store.db") as store,
            Registry.open(store) as registry,
            Instance.open(
                instance_id="i-1",
                registry=registry,
                runtime=runtime,
                settings=CacheSettings(load_failure_expiry_seconds=expiry_s),
                clock=clock,
                mesh=MeshSettings(
                    rate_check_interval_s=0.05, lease_ttl_s=2.0, vmodel_retire_delay_s=0.2
                ),
            ) as instance,
        ):
            yield instance

    return opener


def _request(value: float = 1.0) -> InferenceRequest:
    return InferenceRequest(model_name="", inputs=[Tensor("x", Datatype.FP64, np.array([value]))])


async def _infer(instance: Instance, name: str, value: float = 1.0) -> str:
    model_id = instance.resolve(name, RoutingHeaders())
    response = await instance.infer(model_id, _request(value))
    assert float(response.outputs[0].data[0]) == value * 2
    return response.model_name


async def test_first_request_loads_and_concurrent_requests_share_the_load(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    runtime.models["/m"] = FakeModel(delay=0.05)
    async with open_instance() as instance:
        await instance.register_model("m", type="fake", path="/m")
        assert instance.model_status("m").state is ModelState.NOT_LOADED
        names = await asyncio.gather(*(_infer(instance, "m", i) for i in range(16)))
        assert names == ["m"] * 16
        assert runtime.load_calls == ["m"]
        status = instance.model_status("m")
        assert status.state is ModelState.LOADED
        assert [c.location for c in status.copies] == ["i-1"]


async def test_least_recently_used_models_are_evicted_for_space(
    open_instance: OpenInstance, runtime: FakeRuntime, clock: ManualClock
) -> None:
    for name in "abcd":
        runtime.models[f"/{name}"] = FakeModel(size=300 * KB)
    async with open_instance() as instance:
        for name in "abcd":
            await instance.register_model(name, type="fake", path=f"/{name}")
        for name in "abc":
            await _infer(instance, name)
            clock.advance(1)
        await _infer(instance, "a")  # a becomes the most recent
        clock.advance(1)
        await _infer(instance, "d")  # no room for 4 x 300 KB in 1000 KB: b goes
        assert runtime.unload_calls == ["b"]
        assert instance.model_status("b").state is ModelState.NOT_LOADED
        assert {m for m in "acd" if instance.model_ready(m)} == set("acd")
        summary = {s.model_id: s for s in instance.list_models()}
        assert summary["b"].eviction_count == 1
        clock.advance(1)
        await _infer(instance, "b")  # reload: c is now the least recent
        assert runtime.unload_calls == ["b", "c"]
        assert {s.model_id: s for s in instance.list_models()}["b"].load_count == 2
        assert instance.describe().used_bytes <= runtime.capacity


async def test_a_model_larger_than_the_capacity_fails_clearly(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    runtime.models["/huge"] = FakeModel(size=2000 * KB)
    async with open_instance() as instance:
        await instance.register_model("huge", type="fake", path="/huge")
        with pytest.raises(errors.ModelTooLargeError, match="whole capacity"):
            await _infer(instance, "huge")
        status = instance.model_status("huge")
        assert status.state is ModelState.LOADING_FAILED
        assert "capacity" in status.errors[0]
        assert runtime.load_calls == []  # refused before loading


async def test_a_model_measured_larger_than_capacity_is_unloaded(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    runtime.models["/sneaky"] = FakeModel(size=2000 * KB, predicted=10 * KB)
    async with open_instance() as instance:
        await instance.register_model("sneaky", type="fake", path="/sneaky")
        with pytest.raises(errors.ModelTooLargeError, match="measured"):
            await _infer(instance, "sneaky")
        assert runtime.unload_calls == ["sneaky"]
        assert instance.describe().used_bytes == 0


async def test_proactive_loads_never_displace_models_used_in_the_last_hour(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    for name in ("hot1", "hot2", "hot3", "new"):
        runtime.models[f"/{name}"] = FakeModel(size=300 * KB)
    async with open_instance() as instance:
        for name in ("hot1", "hot2", "hot3"):
            await instance.register_model(name, type="fake", path=f"/{name}")
            await _infer(instance, name)
        status = await instance.register_model(
            "new", type="fake", path="/new", load_now=True, sync=True
        )
        assert status.state is not ModelState.LOADED
        assert runtime.unload_calls == []
        # A request, unlike a registration, may evict the least recent model.
        await _infer(instance, "new")
        assert runtime.unload_calls == ["hot1"]


async def test_load_now_and_ensure_loaded(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    async with open_instance() as instance:
        status = await instance.register_model(
            "m", type="fake", path="/m", load_now=True, sync=True
        )
        assert status.state is ModelState.LOADED
        await instance.register_model("n", type="fake", path="/n")
        assert (await instance.ensure_loaded("n", sync=True)).state is ModelState.LOADED
        assert (await instance.ensure_loaded("zzz")).state is ModelState.NOT_FOUND


async def test_failures_are_kept_until_they_expire_then_retried(
    open_instance: OpenInstance, runtime: FakeRuntime, clock: ManualClock
) -> None:
    runtime.models["/bad"] = FakeModel(fail=errors.CorruptModelError("bad.onnx is garbage"))
    async with open_instance(expiry_s=60) as instance:
        await instance.register_model("bad", type="fake", path="/bad")
        with pytest.raises(errors.CorruptModelError, match="garbage"):
            await _infer(instance, "bad")
        with pytest.raises(errors.CorruptModelError, match="garbage"):
            await _infer(instance, "bad")
        assert runtime.load_calls == ["bad"]  # the second request was not a retry
        status = instance.model_status("bad")
        assert status.state is ModelState.LOADING_FAILED
        assert status.errors == ("bad.onnx is garbage",)
        runtime.models["/bad"].fail = None
        clock.advance(61)
        assert await _infer(instance, "bad") == "bad"
        assert runtime.load_calls == ["bad", "bad"]


async def test_a_load_outlasting_the_timeout_fails_and_is_unloaded(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    runtime.timeout_ms = 50
    runtime.models["/slow"] = FakeModel(delay=5)
    async with open_instance() as instance:
        await instance.register_model("slow", type="fake", path="/slow")
        await instance.register_model("fast", type="fake", path="/fast")
        with pytest.raises(errors.LoadTimeoutError, match="within 50 ms"):
            await _infer(instance, "slow")
        assert "slow" in runtime.unload_calls
        assert await _infer(instance, "fast") == "fast"


async def test_a_model_lost_by_the_runtime_is_reloaded_once(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    async with open_instance() as instance:
        await instance.register_model("m", type="fake", path="/m")
        await _infer(instance, "m")
        runtime.loaded.clear()  # e.g. the runtime process restarted
        assert await _infer(instance, "m") == "m"
        assert runtime.load_calls == ["m", "m"]


async def test_registration_is_idempotent_and_persists(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    async with open_instance() as instance:
        await instance.register_model("m", type="fake", path="/m")
        await instance.register_model("m", type="fake", path="/m")
        with pytest.raises(errors.AlreadyExistsError, match="different parameters"):
            await instance.register_model("m", type="fake", path="/other")
        with pytest.raises(errors.InvalidRequestError):
            await instance.register_model("x", type="", path="/x")
    async with open_instance() as instance:
        assert [s.model_id for s in instance.list_models()] == ["m"]
        await instance.unregister_model("m")
        await instance.unregister_model("m")  # no effect when unknown
        assert instance.model_status("m").state is ModelState.NOT_FOUND


async def test_routing_prefers_headers_then_vmodels_then_models(
    open_instance: OpenInstance,
) -> None:
    async with open_instance() as instance:
        await instance.register_model("m1", type="fake", path="/1")
        await instance.register_model("m2", type="fake", path="/2")
        await instance.set_vmodel("m2", target_model_id="m1")  # a vmodel named like a model
        assert instance.resolve("m2", RoutingHeaders()) == "m1"
        assert instance.resolve("x", RoutingHeaders(model_id="m2")) == "m2"
        assert instance.resolve("x", RoutingHeaders(vmodel_id="m2")) == "m1"
        with pytest.raises(errors.InvalidRequestError, match="not both"):
            instance.resolve("x", RoutingHeaders(model_id="m1", vmodel_id="m2"))
        with pytest.raises(errors.ModelNotFoundError):
            instance.resolve("nope", RoutingHeaders())
        with pytest.raises(errors.ModelNotFoundError):
            instance.resolve("x", RoutingHeaders(vmodel_id="nope"))


async def test_vmodel_serves_the_active_model_until_the_target_loads(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    gate = asyncio.Event()
    runtime.models["/v2"] = FakeModel(gate=gate)
    async with open_instance() as instance:
        status = await instance.set_vmodel(
            "v",
            target_model_id="v-1",
            model_type="fake",
            model_path="/v1",
            auto_delete_target=True,
            load_now=True,
            sync=True,
        )
        assert status.state is VModelState.DEFINED
        assert await _infer(instance, "v") == "v-1"
        status = await instance.set_vmodel(
            "v",
            target_model_id="v-2",
            model_type="fake",
            model_path="/v2",
            auto_delete_target=True,
        )
        assert status.state is VModelState.TRANSITIONING
        assert status.active_model_id == "v-1" and status.target_model_id == "v-2"
        assert await _infer(instance, "v") == "v-1"  # still the old one
        gate.set()
        for _ in range(200):
            if instance.vmodel_status("v").state is VModelState.DEFINED:
                break
            await asyncio.sleep(0.01)
        assert instance.vmodel_status("v").active_model_id == "v-2"
        assert await _infer(instance, "v") == "v-2"
        # v-1 stays for the retire delay (requests already routed to it
        # finish), then goes, being auto-delete and referred to by nothing.
        assert instance.model_status("v-1").state is not ModelState.NOT_FOUND
        for _ in range(200):
            if instance.model_status("v-1").state is ModelState.NOT_FOUND:
                break
            await asyncio.sleep(0.01)
        assert instance.model_status("v-1").state is ModelState.NOT_FOUND
        await instance.delete_vmodel("v")
        assert instance.model_status("v-2").state is ModelState.NOT_FOUND


async def test_vmodel_transition_fails_when_the_target_cannot_load(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    runtime.models["/broken"] = FakeModel(fail=errors.CorruptModelError("broken artifact"))
    async with open_instance() as instance:
        await instance.set_vmodel(
            "v",
            target_model_id="good",
            model_type="fake",
            model_path="/good",
            load_now=True,
            sync=True,
        )
        status = await instance.set_vmodel(
            "v", target_model_id="bad", model_type="fake", model_path="/broken", sync=True
        )
        assert status.state is VModelState.TRANSITION_FAILED
        assert status.target_status is not None
        assert status.target_status.errors == ("broken artifact",)
        assert await _infer(instance, "v") == "good"


async def test_vmodel_owner_expected_target_and_update_only(
    open_instance: OpenInstance,
) -> None:
    async with open_instance() as instance:
        await instance.register_model("a", type="fake", path="/a")
        await instance.register_model("b", type="fake", path="/b")
        with pytest.raises(errors.ModelNotFoundError, match="updateOnly"):
            await instance.set_vmodel("v", target_model_id="a", update_only=True)
        await instance.set_vmodel("v", target_model_id="a", owner="isvc")
        with pytest.raises(errors.AlreadyExistsError, match="owner"):
            await instance.set_vmodel("v", target_model_id="b", owner="ksp")
        with pytest.raises(errors.PreconditionFailedError, match="expected"):
            await instance.set_vmodel("v", target_model_id="b", expected_target_model_id="zzz")
        # expected == target: succeeds only if absent or already there.
        await instance.set_vmodel("v", target_model_id="a", expected_target_model_id="a")
        with pytest.raises(errors.PreconditionFailedError):
            await instance.set_vmodel("v", target_model_id="b", expected_target_model_id="b")
        with pytest.raises(errors.ModelNotFoundError, match="no modelInfo"):
            await instance.set_vmodel("v", target_model_id="ghost")
        with pytest.raises(errors.PreconditionFailedError, match="used by vmodel"):
            await instance.unregister_model("a")
        assert instance.vmodel_status("v", owner="other").state is VModelState.NOT_FOUND
        with pytest.raises(errors.PreconditionFailedError, match="owned by"):
            await instance.delete_vmodel("v", owner="other")
        status = await instance.set_vmodel("v", target_model_id="b", force=True)
        assert status.state is VModelState.DEFINED and status.active_model_id == "b"
        await instance.delete_vmodel("v", owner="isvc")
        assert instance.vmodel_status("v").state is VModelState.NOT_FOUND
        await instance.unregister_model("a")


async def test_a_lame_duck_serves_and_loads_what_is_placed_on_it_and_a_draining_one_refuses(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    for path in ("/here", "/placed", "/late"):
        runtime.models[path] = FakeModel()
    placed_here = RoutingHeaders(model_id="placed", hops=1, exclude=("i-0",), dest="i-1")
    async with open_instance() as instance:
        for name in ("here", "placed", "late"):
            await instance.register_model(name, type="fake", path=f"/{name}")
        await _infer(instance, "here")
        instance.mark_ready()
        await instance.lame_duck()
        assert not instance.server_ready()
        # Every request that still arrives is served, whatever the probes say.
        assert await _infer(instance, "here") == "here"
        # Another instance placed a copy here (it found no other room): taken.
        status = await instance.ensure_loaded("placed", sync=True, headers=placed_here)
        assert status.state is ModelState.LOADED
        await instance.drain()
        assert await _infer(instance, "here") == "here"
        late = RoutingHeaders(model_id="late", hops=1, exclude=("i-0",), dest="i-1")
        with pytest.raises(errors.UnavailableError, match="shutting down"):
            await instance.ensure_loaded("late", sync=True, headers=late)


async def test_mesh_records_are_the_registrys_with_this_instance_fresh(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    """What the status page is built from: every instance, model and copy
    (failed loads included, with their reason) and this instance's rates."""
    runtime.models["/m"] = FakeModel(size=200 * KB)
    runtime.models["/bad"] = FakeModel(fail=errors.ModelLoadError("broken file"))
    async with open_instance() as instance:
        await instance.register_model("m", type="fake", path="/m")
        await instance.register_model("bad", type="fake", path="/bad")
        await _infer(instance, "m")
        with pytest.raises(errors.MeshServeError):
            await _infer(instance, "bad")
        (own,) = instance.mesh_records().instances
        # Its own record is read now, not the one last published.
        assert (own.instance_id, own.used_bytes, own.model_count) == ("i-1", 200 * KB, 1)
        settled = {("m", CopyState.LOADED), ("bad", CopyState.FAILED)}
        for _ in range(250):  # copy records are published in the background
            records = instance.mesh_records()
            if {(c.model_id, c.state) for c in records.copies} == settled:
                break
            await asyncio.sleep(0.02)
        assert sorted(m.model_id for m in records.models) == ["bad", "m"]
        copies = {c.model_id: c for c in records.copies}
        assert (copies["m"].state, copies["m"].size_bytes) == (CopyState.LOADED, 200 * KB)
        assert copies["bad"].state is CopyState.FAILED
        assert "broken file" in copies["bad"].error
        assert list(records.rpm_here) == ["m"] and records.rpm_here["m"] > 0
