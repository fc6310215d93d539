"""Namespace quotas (models registered, bytes loaded) on an instance over a
real SQLite store and a scripted runtime."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from meshserve import errors
from meshserve._clock import ManualClock
from meshserve.mesh import Instance, ModelState
from meshserve.mesh._quotas import SIZES_PREFIX
from meshserve.metrics import Metrics
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import InferenceRequest, Tensor
from meshserve.protocol.routing import RoutingHeaders
from meshserve.registry import Registry
from meshserve.settings import CacheSettings, LimitsSettings, MeshSettings
from meshserve.store import SqliteStore, Store
from tests.fakes import FakeModel, FakeRuntime

KB = 1024


@dataclass
class Opened:
    instance: Instance
    store: Store
    metrics: Metrics

    def rejected(self, limit: str) -> float:
        text = self.metrics.render().decode()
        prefix = f'meshserve_limit_rejected_total{{limit="{limit}"}} '
        lines = [line for line in text.splitlines() if line.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0


OpenInstance = Callable[[LimitsSettings], AbstractAsyncContextManager[Opened]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime(capacity=10_000 * KB)


@pytest.fixture
def open_instance(tmp_path: pathlib.Path, runtime: FakeRuntime, clock: ManualClock) -> OpenInstance:
    @asynccontextmanager
    async def opener(limits: LimitsSettings) -> AsyncIterator[Opened]:
        metrics = Metrics()
        async with (
            SqliteStore.open(tmp_path / "store.db") as store,
            Registry.open(store) as registry,
            Instance.open(
                instance_id="i-1",
                registry=registry,
                runtime=runtime,
                settings=CacheSettings(),
                clock=clock,
                mesh=MeshSettings(lease_ttl_s=2.0),
                metrics=metrics,
                limits=limits,
            ) as instance,
        ):
            yield Opened(instance=instance, store=store, metrics=metrics)

    return opener


async def _infer(instance: Instance, name: str) -> None:
    model_id = instance.resolve(name, RoutingHeaders())
    request = InferenceRequest(model_name="", inputs=[Tensor("x", Datatype.FP64, np.ones(1))])
    await instance.infer(model_id, request)


async def test_no_limits_by_default(open_instance: OpenInstance, runtime: FakeRuntime) -> None:
    async with open_instance(LimitsSettings()) as opened:
        for n in range(5):
            await opened.instance.register_model(f"team-a/m{n}", type="fake", path="/m")
            await _infer(opened.instance, f"team-a/m{n}")
        assert (await opened.store.range(SIZES_PREFIX)).kvs == ()  # nothing recorded


async def test_a_namespace_cannot_register_more_models_than_its_quota(
    open_instance: OpenInstance,
) -> None:
    async with open_instance(LimitsSettings(models_per_namespace=2)) as opened:
        instance = opened.instance
        await instance.register_model("team-a/x", type="fake", path="/x")
        await instance.register_model("team-a/y", type="fake", path="/y")
        with pytest.raises(errors.QuotaExceededError) as refused:
            await instance.register_model("team-a/z", type="fake", path="/z")
        assert str(refused.value) == (
            "cannot register model 'team-a/z': namespace 'team-a' has 2 models, its quota "
            "(limits.modelsPerNamespace) is 2; unregister one first"
        )
        assert instance.model_status("team-a/z").state is ModelState.NOT_FOUND
        # Registering an existing model again is not a new model.
        await instance.register_model("team-a/x", type="fake", path="/x")
        # Other namespaces have their own count; ids without a prefix are in default.
        await instance.register_model("team-b/x", type="fake", path="/x")
        await instance.register_model("plain", type="fake", path="/x")
        await instance.register_model("other", type="fake", path="/x")
        with pytest.raises(errors.QuotaExceededError, match="namespace 'default'"):
            await instance.register_model("third", type="fake", path="/x")
        assert opened.rejected("models_per_namespace") == 2
        await instance.unregister_model("team-a/x")
        await instance.register_model("team-a/z", type="fake", path="/z")


async def test_a_load_over_the_namespace_byte_quota_fails_with_the_reason(
    open_instance: OpenInstance, runtime: FakeRuntime, clock: ManualClock
) -> None:
    for name in "abc":
        runtime.models[f"/{name}"] = FakeModel(size=100 * KB)
    async with open_instance(LimitsSettings(namespace_max_bytes=250 * KB)) as opened:
        instance = opened.instance
        for name in "abc":
            await instance.register_model(f"team-a/{name}", type="fake", path=f"/{name}")
            await instance.register_model(f"team-b/{name}", type="fake", path=f"/{name}")
        await _infer(instance, "team-a/a")
        await _infer(instance, "team-a/b")
        with pytest.raises(errors.LoadQuotaExceededError) as refused:
            await _infer(instance, "team-a/c")
        assert str(refused.value) == (
            f"model 'team-a/c' ({100 * KB} bytes) would take namespace 'team-a' to "
            f"{300 * KB} bytes, over its quota (limits.namespaceMaxBytes) of {250 * KB} "
            f"bytes: {200 * KB} bytes are taken by 2 other model(s)"
        )
        status = instance.model_status("team-a/c")
        assert status.state is ModelState.LOADING_FAILED
        assert "limits.namespaceMaxBytes" in status.errors[0]
        assert "team-a/c" not in runtime.load_calls  # refused before the runtime loaded it
        # ensureLoaded reports the failure as a status, like any load failure.
        assert (await instance.ensure_loaded("team-a/c", sync=True)).state is (
            ModelState.LOADING_FAILED
        )
        # Another namespace is not affected.
        await _infer(instance, "team-b/a")
        assert opened.rejected("namespace_bytes") == 1
        # Room made (a model unregistered) and the failure expired: it loads.
        await instance.unregister_model("team-a/a")
        clock.advance(CacheSettings().load_failure_expiry_seconds + 1)
        await _infer(instance, "team-a/c")


async def test_measured_sizes_are_shared_through_the_store(
    open_instance: OpenInstance, runtime: FakeRuntime
) -> None:
    runtime.models["/a"] = FakeModel(size=100 * KB, predicted=10 * KB)
    runtime.models["/remote"] = FakeModel(size=100 * KB)
    async with open_instance(LimitsSettings(namespace_max_bytes=250 * KB)) as opened:
        instance = opened.instance
        await instance.register_model("team-a/a", type="fake", path="/a")
        await _infer(instance, "team-a/a")
        # The measured size (not the prediction) is recorded for every instance.
        for _ in range(100):
            recorded = await opened.store.get(SIZES_PREFIX + "team-a/a")
            if recorded is not None:
                break
            await asyncio.sleep(0.01)
        assert recorded is not None and int(recorded.value) == 100 * KB
        # A size another instance measured counts here, though never loaded here.
        await instance.register_model("team-a/remote", type="fake", path="/remote")
        await opened.store.put(SIZES_PREFIX + "team-a/remote", str(160 * KB).encode())
        await instance.register_model("team-a/new", type="fake", path="/new")
        runtime.models["/new"] = FakeModel(size=1 * KB)
        # 100 KB (a) + 160 KB (remote) is over 250 KB already: even 1 KB is refused.
        taken = f"{260 * KB} bytes are taken by 2 other model"
        with pytest.raises(errors.LoadQuotaExceededError, match=taken):
            await _infer(instance, "team-a/new")
