"""The mesh benchmark's request trace and its offline cache simulations.

Pure functions, no I/O: ``make_trace`` draws a seeded Zipf trace over model
indices; ``simulate_lru`` replays any trace through one byte-weighted LRU
cache (ModelMesh's policy), ``simulate_gdsf`` through one GDSF cache (the
mesh's default policy, ``meshserve.mesh.Gdsf`` itself, every reload costing
the same), and ``simulate_belady`` through an offline optimum that knows the
future. The benchmark compares the mesh's measured hit ratio with what these
get for the same trace, sizes and total capacity.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from meshserve.mesh import Gdsf

__all__ = [
    "LruResult",
    "make_trace",
    "simulate_belady",
    "simulate_gdsf",
    "simulate_lru",
    "zipf_weights",
]

_Model = TypeVar("_Model", bound=Hashable)


def zipf_weights(count: int, exponent: float) -> np.ndarray:
    """Probabilities of ranks 1..count, proportional to ``rank ** -exponent``."""
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    weights = np.arange(1, count + 1, dtype=np.float64) ** -exponent
    normalised: np.ndarray = weights / weights.sum()
    return normalised


def make_trace(*, models: int, requests: int, exponent: float, seed: int) -> np.ndarray:
    """``requests`` model indices in 0..models-1 with Zipf(``exponent``) popularity.

    Which model gets which popularity rank is a seeded shuffle, so the most
    popular model is not simply model 0 (whose artifact would then decide
    the result). The same arguments always give the same trace.
    """
    rng = np.random.default_rng(seed)
    rank_to_model = rng.permutation(models)
    ranks = rng.choice(models, size=requests, p=zipf_weights(models, exponent))
    trace: np.ndarray = rank_to_model[ranks]
    return trace


@dataclass(frozen=True, slots=True)
class LruResult:
    requests: int
    hits: int
    loads: int
    """Misses that loaded the model (every miss, unless it is bigger than the cache)."""
    evictions: int
    too_large: int = 0
    """Misses for a model bigger than the whole capacity: served, never cached."""

    @property
    def misses(self) -> int:
        return self.requests - self.hits

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


def simulate_lru(
    trace: Iterable[_Model], *, sizes: Mapping[_Model, int], capacity_bytes: int
) -> LruResult:
    """Replay ``trace`` through one byte-weighted LRU cache of ``capacity_bytes``.

    A request for a cached model is a hit and makes it the most recently
    used. A miss loads the model, first evicting least recently used models
    until it fits. The cache starts empty.
    """
    cache: OrderedDict[_Model, int] = OrderedDict()
    used = requests = hits = loads = evictions = too_large = 0
    for model in trace:
        requests += 1
        if model in cache:
            cache.move_to_end(model)
            hits += 1
            continue
        size = sizes[model]
        if size > capacity_bytes:
            too_large += 1
            continue
        while used + size > capacity_bytes:
            _, freed = cache.popitem(last=False)
            used -= freed
            evictions += 1
        cache[model] = size
        used += size
        loads += 1
    return LruResult(
        requests=requests, hits=hits, loads=loads, evictions=evictions, too_large=too_large
    )


def simulate_gdsf(
    trace: Iterable[_Model],
    *,
    sizes: Mapping[_Model, int],
    capacity_bytes: int,
    ms_per_request: float = 0.0,
    half_life_s: float = 120.0,
) -> LruResult:
    """Replay ``trace`` through one byte-weighted cache evicting in the order
    of the mesh's GDSF policy, every reload costing the same.

    Request ``i`` happens at ``i * ms_per_request`` (the frequencies' decay
    runs on that clock; 0: no decay). Same accounting as ``simulate_lru``.
    """
    policy = Gdsf(half_life_ms=half_life_s * 1000, remembered=1 << 30, unit_bytes=1)
    cache: dict[str, _Entry] = {}
    used = requests = hits = loads = evictions = too_large = 0
    for index, model in enumerate(trace):
        requests += 1
        now = int(index * ms_per_request)
        key = str(model)
        entry = cache.get(key)
        if entry is not None:
            hits += 1
            entry.last_used_ms = now
            policy.used(key, now)
            continue
        size = sizes[model]
        if size > capacity_bytes:
            too_large += 1
            continue
        if used + size > capacity_bytes:
            for victim in policy.order(cache.values(), now_ms=now):
                policy.evicting(victim, now_ms=now)
                del cache[victim.model_id]
                used -= victim.size_bytes
                evictions += 1
                if used + size <= capacity_bytes:
                    break
        cache[key] = _Entry(model_id=key, size_bytes=size, last_used_ms=now)
        policy.loaded(key, load_ms=1.0)
        policy.used(key, now)
        used += size
        loads += 1
    return LruResult(
        requests=requests, hits=hits, loads=loads, evictions=evictions, too_large=too_large
    )


@dataclass(slots=True)
class _Entry:
    model_id: str
    size_bytes: int
    last_used_ms: int


def simulate_belady(
    trace: Sequence[_Model], *, sizes: Mapping[_Model, int], capacity_bytes: int
) -> LruResult:
    """Replay ``trace`` through an offline cache that knows the future:
    Belady's optimum, approximated for sizes.

    On a miss the requested model competes with the cached ones; the
    candidates whose next request is farthest away per byte they free
    (distance x size, never requested again first) are dropped until the
    rest fit, and the requested model itself may be the one dropped
    (served without being cached: an offline optimum may bypass). With
    equal sizes this is Belady's MIN, optimal; with sizes it is the usual
    approximation of the (NP-hard) optimum, an estimate of what any policy
    could reach, not a bound.
    """
    never = len(trace) + 1
    next_use = [never] * len(trace)
    seen: dict[_Model, int] = {}
    for index in range(len(trace) - 1, -1, -1):
        next_use[index] = seen.get(trace[index], never)
        seen[trace[index]] = index
    cache: dict[_Model, int] = {}
    """Cached model -> index of its next request."""
    used = hits = loads = evictions = too_large = 0
    for index, model in enumerate(trace):
        if model in cache:
            hits += 1
            cache[model] = next_use[index]
            continue
        size = sizes[model]
        if size > capacity_bytes:
            too_large += 1
            continue
        cache[model] = next_use[index]
        used += size
        if used > capacity_bytes:
            ranked = sorted(
                cache,
                key=lambda m: (cache[m] >= never, (cache[m] - index) * sizes[m]),
                reverse=True,
            )
            for candidate in ranked:
                if used <= capacity_bytes:
                    break
                del cache[candidate]
                used -= sizes[candidate]
                if candidate != model:  # else bypassed: served, not cached
                    evictions += 1
        if model in cache:
            loads += 1
    return LruResult(
        requests=len(trace), hits=hits, loads=loads, evictions=evictions, too_large=too_large
    )
