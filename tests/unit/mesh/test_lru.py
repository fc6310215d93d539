import pytest

from meshserve.mesh._lru import UNIT_BYTES, EntryState, WeightedLru, round_size


def _loaded(lru: WeightedLru, model_id: str, size: int, used: int) -> None:
    lru.add(model_id, size_bytes=size, last_used_ms=used)
    entry = lru.get(model_id)
    assert entry is not None
    entry.state = EntryState.LOADED


def test_sizes_are_counted_in_8_kib_units() -> None:
    assert round_size(1) == UNIT_BYTES
    assert round_size(UNIT_BYTES) == UNIT_BYTES
    assert round_size(UNIT_BYTES + 1) == 2 * UNIT_BYTES
    assert round_size(0) == UNIT_BYTES
    lru = WeightedLru(10 * UNIT_BYTES)
    lru.add("a", size_bytes=100, last_used_ms=1)
    assert lru.used_bytes == UNIT_BYTES
    lru.resize("a", 3 * UNIT_BYTES)
    assert lru.used_bytes == 3 * UNIT_BYTES
    lru.remove("a")
    assert lru.used_bytes == 0 and lru.free_bytes == 10 * UNIT_BYTES


def test_victims_are_least_recently_used_first() -> None:
    lru = WeightedLru(4 * UNIT_BYTES)
    for i, name in enumerate("abcd"):
        _loaded(lru, name, UNIT_BYTES, used=10 + i)
    lru.touch("a", 100)  # a is now the most recent
    victims = lru.victims(needed_bytes=2 * UNIT_BYTES, older_than_ms=1000)
    assert victims is not None
    assert [v.model_id for v in victims] == ["b", "c"]


def test_nothing_to_evict_when_it_fits() -> None:
    lru = WeightedLru(4 * UNIT_BYTES)
    _loaded(lru, "a", UNIT_BYTES, used=1)
    assert lru.victims(needed_bytes=3 * UNIT_BYTES, older_than_ms=10) == []


def test_loading_busy_and_newer_entries_are_never_victims() -> None:
    lru = WeightedLru(3 * UNIT_BYTES)
    lru.add("loading", size_bytes=UNIT_BYTES, last_used_ms=1)
    _loaded(lru, "busy", UNIT_BYTES, used=2)
    busy = lru.get("busy")
    assert busy is not None
    busy.inflight = 1
    _loaded(lru, "recent", UNIT_BYTES, used=500)
    # A proactive load stamped at 100 may not displace a model used at 500.
    assert lru.victims(needed_bytes=UNIT_BYTES, older_than_ms=100) is None
    victims = lru.victims(needed_bytes=UNIT_BYTES, older_than_ms=1000)
    assert victims is not None and [v.model_id for v in victims] == ["recent"]


def test_over_capacity_after_measurement_frees_the_difference() -> None:
    lru = WeightedLru(4 * UNIT_BYTES)
    _loaded(lru, "old", 2 * UNIT_BYTES, used=1)
    _loaded(lru, "new", UNIT_BYTES, used=2)
    lru.resize("new", 3 * UNIT_BYTES)
    assert lru.free_bytes == -UNIT_BYTES
    victims = lru.victims(needed_bytes=0, older_than_ms=10, keep="new")
    assert victims is not None and [v.model_id for v in victims] == ["old"]


def test_adding_twice_is_an_error() -> None:
    lru = WeightedLru(UNIT_BYTES)
    lru.add("a", size_bytes=1, last_used_ms=1)
    with pytest.raises(KeyError):
        lru.add("a", size_bytes=1, last_used_ms=1)


def test_count_is_the_entries_in_a_state() -> None:
    lru = WeightedLru(4 * UNIT_BYTES)
    _loaded(lru, "a", UNIT_BYTES, used=1)
    _loaded(lru, "b", UNIT_BYTES, used=2)
    lru.add("c", size_bytes=UNIT_BYTES, last_used_ms=3)  # still loading
    assert lru.count(EntryState.LOADED) == 2
    assert lru.count(EntryState.LOADED) == sum(
        1 for e in lru.entries() if e.state is EntryState.LOADED
    )
