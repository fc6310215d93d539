"""The mesh benchmark's request trace and its offline LRU simulation.

Pure functions, no I/O: ``make_trace`` draws a seeded Zipf trace over model
indices, ``simulate_lru`` replays any trace through one byte-weighted LRU
cache. The benchmark compares the mesh's measured hit ratio with what this
simulation gets for the same trace, sizes and total capacity.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

__all__ = ["LruResult", "make_trace", "simulate_lru", "zipf_weights"]

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
