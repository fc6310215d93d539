"""The room a load makes: a reload reserves the size measured at the last
load, a first load the runtime's estimate scaled by how far estimates
overshot; and ``cache.evictionPolicy`` picks the cache's policy."""

from __future__ import annotations

from meshserve._clock import ManualClock
from meshserve.mesh import Gdsf, Lru, ModelCache
from meshserve.runtime import ModelSpec
from meshserve.settings import CacheSettings
from tests.fakes import FakeModel, FakeRuntime

KB = 1000


async def _cache(runtime: FakeRuntime, settings: CacheSettings | None = None) -> ModelCache:
    return ModelCache(
        runtime=runtime,
        status=await runtime.status(),
        settings=settings or CacheSettings(),
        clock=ManualClock(),
    )


async def _load(cache: ModelCache, name: str) -> None:
    await cache.ensure_loaded(ModelSpec(name, "fake", f"/{name}"), last_used_ms=cache.now_ms())


async def test_a_reload_reserves_the_size_measured_before() -> None:
    runtime = FakeRuntime(capacity=1000 * KB)
    runtime.models["/a"] = FakeModel(size=300 * KB, predicted=900 * KB)
    for name in "bc":
        runtime.models[f"/{name}"] = FakeModel(size=300 * KB)
    cache = await _cache(runtime)
    await _load(cache, "a")
    entry = cache.lru.get("a")
    assert entry is not None
    await cache.evict(entry)
    await _load(cache, "b")
    await _load(cache, "c")
    # 600 KB used: a's 300 KB fit. Its (scaled) estimate would not have,
    # and b would have gone for it.
    await _load(cache, "a")
    assert runtime.unload_calls == ["a"]
    assert cache.lru.used_bytes <= 1000 * KB


async def test_a_first_load_scales_the_estimate_by_past_overshoot() -> None:
    runtime = FakeRuntime(capacity=1000 * KB)
    for name in "ab":
        runtime.models[f"/{name}"] = FakeModel(size=300 * KB, predicted=900 * KB)
    cache = await _cache(runtime)
    await _load(cache, "a")
    # Estimates overshoot 3x: b reserves about 300 KB, not 900, and a stays.
    await _load(cache, "b")
    assert runtime.unload_calls == []
    assert cache.is_loaded("a") and cache.is_loaded("b")


async def test_an_estimate_is_never_scaled_up() -> None:
    runtime = FakeRuntime(capacity=1000 * KB)
    runtime.models["/a"] = FakeModel(size=600 * KB, predicted=300 * KB)
    runtime.models["/b"] = FakeModel(size=300 * KB, predicted=300 * KB)
    cache = await _cache(runtime)
    await _load(cache, "a")  # measured twice its estimate
    await _load(cache, "b")  # reserves its own 300 KB: 900 KB, both fit
    assert runtime.unload_calls == []


async def test_the_policy_comes_from_the_settings() -> None:
    runtime = FakeRuntime()
    assert isinstance((await _cache(runtime)).lru.policy, Gdsf)
    lru = await _cache(runtime, CacheSettings(eviction_policy="lru"))
    assert isinstance(lru.lru.policy, Lru)
