"""Which loaded copies go first when space is short: the eviction policies.

``lru`` is ModelMesh's order: least recently used first, nothing else.

``gdsf`` is Greedy-Dual-Size-Frequency (Cherkasova, 1998): a copy's
priority is the cache's clock when it was last used plus its frequency times
its reload cost over its size, and the lowest priority goes first. Evicting
raises the clock to the evicted priority, so copies that are not used fall
behind the ones that are, whatever their past. Frequency decays
exponentially (``cache.frequencyHalfLifeSeconds``), so a model that stops
being asked for loses its lead within minutes and a newly popular one
overtakes it; it is remembered for a bounded number of evicted models, so a
model that comes back is not a stranger. On a skewed trace this keeps more
of what is asked for than recency alone: many small, often used models beat
one big, rarely used one.

No admission control: a request for a model that is not loaded anywhere
must load it to be served, so refusing to cache it would cost the same
load again on its next request.

Pure bookkeeping, no I/O, no clock of its own: times come from the caller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

__all__ = ["NOTHING_TO_EVICT", "EvictionPolicy", "Gdsf", "Lru", "Scored", "make_policy"]

NOTHING_TO_EVICT = 1e12
"""A victim value no copy reaches: the instance has nothing it could evict."""

_COST_SMOOTHING = 0.5
"""Weight of the newest load time in a model's reload cost (load times are
noisy on a busy machine; two or three loads settle it)."""
_MIN_COST_MS = 1.0
_COST_RANGE = 2.0
"""A model costing more (less) to reload than the mean weighs at most this
factor more (less)."""


class Scored(Protocol):
    """What a policy reads of a cached copy (``CacheEntry`` has it)."""

    @property
    def model_id(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def last_used_ms(self) -> int: ...


_S = TypeVar("_S", bound=Scored)


class EvictionPolicy(Protocol):
    name: str

    def used(self, model_id: str, now_ms: int) -> None:
        """A request ran on the model's copy."""

    def loaded(self, model_id: str, *, load_ms: float) -> None:
        """The model's copy loaded in ``load_ms``."""

    def order(self, entries: Iterable[_S], *, now_ms: int) -> list[_S]:
        """``entries``, the first to evict first."""
        ...

    def evicting(self, entry: Scored, *, now_ms: int) -> None:
        """``entry`` is about to be evicted for space."""

    def victim_value(self, entries: Iterable[Scored], *, now_ms: int) -> float:
        """What evicting the first of ``entries`` would lose, comparable
        across instances (placement sends a new copy where this is lowest);
        0 for a policy whose placement is by last use alone."""
        ...


class Lru:
    """ModelMesh's order: least recently used first."""

    name = "lru"

    def used(self, model_id: str, now_ms: int) -> None:
        pass

    def loaded(self, model_id: str, *, load_ms: float) -> None:
        pass

    def order(self, entries: Iterable[_S], *, now_ms: int) -> list[_S]:
        return sorted(entries, key=lambda e: e.last_used_ms)

    def evicting(self, entry: Scored, *, now_ms: int) -> None:
        pass

    def victim_value(self, entries: Iterable[Scored], *, now_ms: int) -> float:
        return 0.0


@dataclass(slots=True)
class _History:
    frequency: float
    """Uses, decayed to ``at_ms``."""
    at_ms: int
    clock: float
    """The cache's clock at the last use."""
    cost_ms: float = 0.0
    """Smoothed load time (0: never loaded here)."""


class Gdsf:
    """Greedy-Dual-Size-Frequency with decayed frequencies."""

    name = "gdsf"

    def __init__(self, *, half_life_ms: float, remembered: int, unit_bytes: int) -> None:
        if half_life_ms <= 0 or remembered <= 0 or unit_bytes <= 0:
            raise ValueError("half_life_ms, remembered and unit_bytes must be positive")
        self._decay_per_ms = math.log(2) / half_life_ms
        self._remembered = remembered
        self._unit_bytes = unit_bytes
        self.clock = 0.0
        """Rises to each evicted priority (GDSF's L)."""
        self._history: dict[str, _History] = {}
        self._cost_total = 0.0
        self._cost_count = 0

    def frequency(self, model_id: str, now_ms: int) -> float:
        """The model's uses, decayed to ``now_ms`` (0 if never used)."""
        history = self._history.get(model_id)
        if history is None:
            return 0.0
        return history.frequency * math.exp(-self._decay_per_ms * max(0, now_ms - history.at_ms))

    def used(self, model_id: str, now_ms: int) -> None:
        history = self._history.get(model_id)
        if history is None:
            self._history[model_id] = _History(frequency=1.0, at_ms=now_ms, clock=self.clock)
            self._bound()
            return
        history.frequency = self.frequency(model_id, now_ms) + 1.0
        history.at_ms = max(history.at_ms, now_ms)
        history.clock = self.clock

    def loaded(self, model_id: str, *, load_ms: float) -> None:
        load_ms = max(_MIN_COST_MS, load_ms)
        self._cost_total += load_ms
        self._cost_count += 1
        history = self._history.setdefault(
            model_id, _History(frequency=0.0, at_ms=0, clock=self.clock)
        )
        history.cost_ms = (
            load_ms
            if not history.cost_ms
            else (1 - _COST_SMOOTHING) * history.cost_ms + _COST_SMOOTHING * load_ms
        )

    def priority(self, entry: Scored, *, now_ms: int) -> float:
        """Clock at last use + decayed frequency x relative reload cost / size."""
        history = self._history.get(entry.model_id)
        clock = self._clock_of(entry.model_id)
        cost = self._relative_cost(history.cost_ms if history is not None else 0.0)
        units = max(1, -(-entry.size_bytes // self._unit_bytes))
        return clock + self.frequency(entry.model_id, now_ms) * cost / units

    def order(self, entries: Iterable[_S], *, now_ms: int) -> list[_S]:
        # Ties (equal priority) go least recently used first.
        return sorted(entries, key=lambda e: (self.priority(e, now_ms=now_ms), e.last_used_ms))

    def evicting(self, entry: Scored, *, now_ms: int) -> None:
        self.clock = max(self.clock, self.priority(entry, now_ms=now_ms))

    def victim_value(self, entries: Iterable[Scored], *, now_ms: int) -> float:
        """The first victim's decayed frequency x relative cost / size: its
        priority without this cache's clock, which other instances' clocks
        are not comparable with. ``NOTHING_TO_EVICT`` when there is none."""
        # min, not order(): the instance record asks on every placement.
        first = min(
            entries,
            key=lambda e: (self.priority(e, now_ms=now_ms), e.last_used_ms),
            default=None,
        )
        if first is None:
            return NOTHING_TO_EVICT
        return self.priority(first, now_ms=now_ms) - self._clock_of(first.model_id)

    def _clock_of(self, model_id: str) -> float:
        history = self._history.get(model_id)
        return history.clock if history is not None else self.clock

    def _relative_cost(self, cost_ms: float) -> float:
        """A model's load time over the mean of all loads here, within
        [1/_COST_RANGE, _COST_RANGE] (1: not loaded yet). Bounded because a
        load time measured on a busy machine is mostly queueing: one slow
        load must not make a cold model outrank a hot one."""
        if not cost_ms or not self._cost_count:
            return 1.0
        mean = self._cost_total / self._cost_count
        return min(_COST_RANGE, max(1 / _COST_RANGE, cost_ms / mean))

    def _bound(self) -> None:
        """Forget the least used histories once twice ``remembered`` are kept
        (amortised: one sort per ``remembered`` new models)."""
        if len(self._history) <= 2 * self._remembered:
            return
        latest = max(h.at_ms for h in self._history.values())
        kept = sorted(
            self._history.items(),
            key=lambda item: self.frequency(item[0], latest),
            reverse=True,
        )[: self._remembered]
        self._history = dict(kept)


def make_policy(
    name: str, *, half_life_ms: float, remembered: int, unit_bytes: int
) -> EvictionPolicy:
    """The policy named by ``cache.evictionPolicy``."""
    if name == "lru":
        return Lru()
    if name == "gdsf":
        return Gdsf(half_life_ms=half_life_ms, remembered=remembered, unit_bytes=unit_bytes)
    raise ValueError(f"unknown eviction policy {name!r}: use gdsf or lru")
