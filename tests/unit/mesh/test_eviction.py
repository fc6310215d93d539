"""The eviction policies: GDSF's frequency, size, cost and decay, and lru as
ModelMesh's exact order, through the cache's bookkeeping (WeightedLru)."""

from __future__ import annotations

import random

import pytest

from meshserve.mesh._eviction import NOTHING_TO_EVICT, Gdsf, Lru, make_policy
from meshserve.mesh._lru import UNIT_BYTES, EntryState, WeightedLru

_HALF_LIFE_MS = 60_000


def _gdsf(*, half_life_ms: float = _HALF_LIFE_MS, remembered: int = 1000) -> Gdsf:
    return Gdsf(half_life_ms=half_life_ms, remembered=remembered, unit_bytes=UNIT_BYTES)


def _loaded(
    cache: WeightedLru, model_id: str, *, units: int = 1, at: int, load_ms: float = 10.0
) -> None:
    cache.add(model_id, size_bytes=units * UNIT_BYTES, last_used_ms=at)
    entry = cache.get(model_id)
    assert entry is not None
    entry.state = EntryState.LOADED
    cache.loaded(model_id, load_ms=load_ms)
    cache.used(model_id, at)


def _victim_ids(cache: WeightedLru, *, units: int, now: int) -> list[str]:
    victims = cache.victims(needed_bytes=units * UNIT_BYTES, older_than_ms=now, now_ms=now)
    assert victims is not None
    return [v.model_id for v in victims]


def test_a_hot_model_used_less_recently_outlives_a_cold_recent_one() -> None:
    cache = WeightedLru(2 * UNIT_BYTES, policy=_gdsf())
    _loaded(cache, "hot", at=1_000)
    for t in range(1_001, 1_020):
        cache.used("hot", t)
    _loaded(cache, "cold", at=2_000)  # used once, but after hot's last use
    assert _victim_ids(cache, units=1, now=2_001) == ["cold"]


def test_lru_evicts_the_hot_model_that_gdsf_keeps() -> None:
    cache = WeightedLru(2 * UNIT_BYTES, policy=Lru())
    _loaded(cache, "hot", at=1_000)
    for t in range(1_001, 1_020):
        cache.used("hot", t)
    _loaded(cache, "cold", at=2_000)
    assert _victim_ids(cache, units=1, now=2_001) == ["hot"]


def test_a_big_model_goes_before_a_small_one_used_as_often() -> None:
    cache = WeightedLru(8 * UNIT_BYTES, policy=_gdsf())
    _loaded(cache, "small", units=1, at=1_000)
    _loaded(cache, "big", units=4, at=900)
    for t in (1_100, 1_200):
        cache.used("small", t)
        cache.used("big", t + 50)  # big is the more recently used
    # One unit is short: the big one goes although it is the more recent.
    assert _victim_ids(cache, units=4, now=2_000) == ["big"]


def test_a_model_that_costs_more_to_reload_is_kept() -> None:
    cache = WeightedLru(2 * UNIT_BYTES, policy=_gdsf())
    _loaded(cache, "slow", at=1_000, load_ms=500)
    _loaded(cache, "fast", at=900, load_ms=5)
    cache.used("fast", 1_100)  # as often, and more recently
    cache.used("slow", 1_050)
    assert _victim_ids(cache, units=1, now=2_000) == ["fast"]


def test_decay_follows_a_shift_in_popularity() -> None:
    policy = _gdsf()
    cache = WeightedLru(2 * UNIT_BYTES, policy=policy)
    _loaded(cache, "old-favourite", at=0)
    for t in range(1, 100):
        cache.used("old-favourite", t)  # 100 uses in the first 0.1 s
    _loaded(cache, "new-favourite", at=1_000)
    for i in range(20):  # then 20 uses over the next five minutes, none of the old
        cache.used("new-favourite", 1_000 + i * 15_000)
    now = 300_000
    assert policy.frequency("new-favourite", now) > policy.frequency("old-favourite", now)
    assert _victim_ids(cache, units=1, now=now) == ["old-favourite"]


def test_without_decay_the_old_favourite_would_have_stayed() -> None:
    # The same history with a half-life of years: the shift is not followed.
    cache = WeightedLru(2 * UNIT_BYTES, policy=_gdsf(half_life_ms=1e12))
    _loaded(cache, "old-favourite", at=0)
    for t in range(1, 100):
        cache.used("old-favourite", t)
    _loaded(cache, "new-favourite", at=1_000)
    for i in range(20):
        cache.used("new-favourite", 1_000 + i * 15_000)
    assert _victim_ids(cache, units=1, now=300_000) == ["new-favourite"]


def test_frequency_halves_every_half_life() -> None:
    policy = _gdsf()
    policy.used("m", 0)
    policy.used("m", 0)
    assert policy.frequency("m", _HALF_LIFE_MS) == pytest.approx(1.0)
    assert policy.frequency("m", 2 * _HALF_LIFE_MS) == pytest.approx(0.5)
    assert policy.frequency("never-used", 0) == 0.0


def test_evicting_raises_the_clock_so_idle_models_age_out() -> None:
    policy = _gdsf(half_life_ms=1e12)
    cache = WeightedLru(2 * UNIT_BYTES, policy=policy)
    _loaded(cache, "once-hot", at=0)
    for t in range(1, 5):
        cache.used("once-hot", t)
    # A stream of new models, each used twice: each eviction raises the
    # clock, and new models enter at the raised clock, until the idle
    # once-hot model is the lowest.
    evicted: list[str] = []
    for i in range(20):
        now = 100 + i
        name = f"new-{i}"
        victims = cache.victims(needed_bytes=UNIT_BYTES, older_than_ms=now, now_ms=now)
        assert victims is not None
        for victim in victims:
            cache.remove(victim.model_id)
            evicted.append(victim.model_id)
        _loaded(cache, name, at=now)
        cache.used(name, now)
    assert "once-hot" in evicted
    assert policy.clock > 0


def test_a_returning_model_keeps_its_history() -> None:
    policy = _gdsf()
    cache = WeightedLru(2 * UNIT_BYTES, policy=policy)
    _loaded(cache, "regular", at=0)
    for t in range(1, 10):
        cache.used("regular", t)
    cache.remove("regular")  # evicted, say, during a burst
    _loaded(cache, "regular", at=1_000)
    _loaded(cache, "newcomer", at=1_001)
    assert _victim_ids(cache, units=1, now=1_002) == ["newcomer"]


def test_memory_of_evicted_models_is_bounded() -> None:
    policy = _gdsf(remembered=10)
    for i in range(100):
        policy.used(f"m{i}", i)
    assert sum(1 for i in range(100) if policy.frequency(f"m{i}", 100) > 0) <= 20
    assert policy.frequency("m99", 100) > 0  # the most recent are kept


def test_lru_setting_gives_exactly_least_recently_used_order() -> None:
    rng = random.Random(7)
    gdsf_like = WeightedLru(50 * UNIT_BYTES, policy=make_policy("lru", **_ARGS))
    reference = WeightedLru(50 * UNIT_BYTES)  # the cache's original LRU
    for cache in (gdsf_like, reference):
        rng.seed(7)
        for i in range(30):
            _loaded(cache, f"m{i}", units=rng.randint(1, 3), at=rng.randint(0, 10_000))
        for _ in range(200):
            cache.used(f"m{rng.randrange(30)}", rng.randint(0, 20_000))
    expected = sorted(reference.entries(), key=lambda e: e.last_used_ms)
    for needed in (1, 5, 20, 40):
        got = gdsf_like.victims(needed_bytes=needed * UNIT_BYTES, older_than_ms=30_000)
        want = reference.victims(needed_bytes=needed * UNIT_BYTES, older_than_ms=30_000)
        assert got is not None and want is not None
        assert [v.model_id for v in got] == [v.model_id for v in want]
        assert [v.model_id for v in got] == [e.model_id for e in expected[: len(got)]]


_ARGS = {"half_life_ms": _HALF_LIFE_MS, "remembered": 100, "unit_bytes": UNIT_BYTES}


def test_policies_are_chosen_by_name() -> None:
    assert isinstance(make_policy("gdsf", **_ARGS), Gdsf)
    assert isinstance(make_policy("lru", **_ARGS), Lru)
    with pytest.raises(ValueError, match="unknown eviction policy 'lfu'"):
        make_policy("lfu", **_ARGS)


def test_gdsf_never_picks_busy_loading_or_newer_copies() -> None:
    cache = WeightedLru(3 * UNIT_BYTES, policy=_gdsf())
    cache.add("loading", size_bytes=UNIT_BYTES, last_used_ms=1)
    _loaded(cache, "busy", at=2)
    busy = cache.get("busy")
    assert busy is not None
    busy.inflight = 1
    _loaded(cache, "recent", at=500)
    assert cache.victims(needed_bytes=UNIT_BYTES, older_than_ms=100, now_ms=600) is None
    assert _victim_ids(cache, units=1, now=1_000) == ["recent"]


def test_victim_value_is_the_first_victims_worth_without_the_clock() -> None:
    policy = _gdsf(half_life_ms=1e12)
    cache = WeightedLru(4 * UNIT_BYTES, policy=policy)
    _loaded(cache, "hot", at=0)
    for t in range(1, 4):
        cache.used("hot", t)  # 4 uses, 1 unit
    _loaded(cache, "big", units=2, at=10)  # 1 use, 2 units
    # Equal load times: relative cost 1; big's worth is 1 use / 2 units.
    assert cache.victim_value(20) == pytest.approx(0.5)
    big = cache.get("big")
    assert big is not None
    big.inflight = 1  # busy copies are not victims: hot is next
    assert cache.victim_value(20) == pytest.approx(4.0)
    hot = cache.get("hot")
    assert hot is not None
    hot.inflight = 1
    assert cache.victim_value(20) == NOTHING_TO_EVICT


def test_lru_publishes_no_victim_value() -> None:
    cache = WeightedLru(2 * UNIT_BYTES, policy=Lru())
    _loaded(cache, "a", at=1)
    assert cache.victim_value(2) == 0.0
