"""A weighted cache of loaded models: sizes in bytes against a capacity.

Pure bookkeeping, no I/O: the instance asks it which models to evict before a
load and tells it what happened. Which copies go first is the eviction
policy's choice (``mesh/_eviction.py``: GDSF, or ModelMesh's LRU); entries
are listed least recently used first either way. Sizes are rounded up to ModelMesh's 8 KiB
accounting unit so that many tiny models cannot pretend to be free.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meshserve.mesh._eviction import EvictionPolicy, Lru

__all__ = ["UNIT_BYTES", "CacheEntry", "EntryState", "InUse", "WeightedLru", "round_size"]

UNIT_BYTES = 8 * 1024


def round_size(size: int) -> int:
    """``size`` rounded up to whole 8 KiB units (at least one)."""
    return max(1, -(-size // UNIT_BYTES)) * UNIT_BYTES


class EntryState(enum.Enum):
    LOADING = "LOADING"
    LOADED = "LOADED"


@dataclass(slots=True)
class CacheEntry:
    model_id: str
    size_bytes: int
    last_used_ms: int
    state: EntryState
    inflight: int = 0
    """Requests running on this copy; a busy copy is never evicted."""
    loaded_at_ms: int = 0


class InUse:
    """One request's use of an entry, counted in ``inflight`` until the
    ``with`` block ends (``ModelCache.in_use``). A class rather than a
    generator-based context manager: it runs on every request."""

    __slots__ = ("_entry",)

    def __init__(self, entry: CacheEntry) -> None:
        self._entry = entry

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self._entry.inflight -= 1


class WeightedLru:
    """Entries ordered by last use, with their sizes summed against capacity;
    victims chosen by ``policy`` (default: least recently used first)."""

    def __init__(self, capacity_bytes: int, *, policy: EvictionPolicy | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self.policy: EvictionPolicy = policy or Lru()
        self._entries: dict[str, CacheEntry] = {}
        self.used_bytes = 0

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes

    def get(self, model_id: str) -> CacheEntry | None:
        return self._entries.get(model_id)

    def count(self, state: EntryState) -> int:
        """Entries in ``state`` (no ordering: cheaper than :meth:`entries`)."""
        return sum(1 for e in self._entries.values() if e.state is state)

    def entries(self) -> list[CacheEntry]:
        """Every entry, least recently used first."""
        return sorted(self._entries.values(), key=lambda e: e.last_used_ms)

    def oldest_last_used_ms(self) -> int:
        """Last use of the least recently used entry (0 when empty)."""
        return min((e.last_used_ms for e in self._entries.values()), default=0)

    def touch(self, model_id: str, now_ms: int) -> None:
        entry = self._entries.get(model_id)
        if entry is not None and now_ms > entry.last_used_ms:
            entry.last_used_ms = now_ms

    def used(self, model_id: str, now_ms: int) -> None:
        """A request runs on the model's copy: recency, and the policy's
        frequency."""
        if model_id in self._entries:
            self.touch(model_id, now_ms)
            self.policy.used(model_id, now_ms)

    def loaded(self, model_id: str, *, load_ms: float) -> None:
        """The model's copy loaded in ``load_ms`` (its reload cost)."""
        self.policy.loaded(model_id, load_ms=load_ms)

    def add(self, model_id: str, *, size_bytes: int, last_used_ms: int) -> CacheEntry:
        """Account for a model about to load (state LOADING)."""
        if model_id in self._entries:
            raise KeyError(f"{model_id} is already in the cache")
        entry = CacheEntry(
            model_id=model_id,
            size_bytes=round_size(size_bytes),
            last_used_ms=last_used_ms,
            state=EntryState.LOADING,
        )
        self._entries[model_id] = entry
        self.used_bytes += entry.size_bytes
        return entry

    def resize(self, model_id: str, size_bytes: int) -> None:
        """Replace a predicted size with the measured one."""
        entry = self._entries[model_id]
        rounded = round_size(size_bytes)
        self.used_bytes += rounded - entry.size_bytes
        entry.size_bytes = rounded

    def remove(self, model_id: str) -> CacheEntry | None:
        entry = self._entries.pop(model_id, None)
        if entry is not None:
            self.used_bytes -= entry.size_bytes
        return entry

    def victim_value(self, now_ms: int) -> float:
        """What the policy's first victim would lose (``policy.victim_value``)."""
        evictable = (
            e for e in self._entries.values() if e.state is EntryState.LOADED and e.inflight == 0
        )
        return self.policy.victim_value(evictable, now_ms=now_ms)

    def victims(
        self,
        *,
        needed_bytes: int,
        older_than_ms: int,
        keep: str | None = None,
        now_ms: int | None = None,
    ) -> list[CacheEntry] | None:
        """The loaded entries to evict, in the policy's order, so that
        ``needed_bytes`` more fit, or None if that is impossible. The policy
        is told of each one chosen (they are to be evicted at once).

        Only entries last used no later than ``older_than_ms`` qualify: a load for a
        request passes "now" (anything older may go), a proactive load passes
        its own, older, timestamp, so it never displaces a model used more
        recently than it. Loading and busy entries never qualify. ``now_ms``
        (default ``older_than_ms``) is the time the policy scores at.
        """
        # needed_bytes 0 still frees space when the cache is over capacity
        # (a model measured bigger than predicted).
        shortfall = (round_size(needed_bytes) if needed_bytes > 0 else 0) - self.free_bytes
        if shortfall <= 0:
            return []
        now = older_than_ms if now_ms is None else now_ms
        candidates = (
            e
            for e in self._entries.values()
            if e.model_id != keep
            and e.state is EntryState.LOADED
            and e.inflight == 0
            and e.last_used_ms <= older_than_ms
        )
        chosen: list[CacheEntry] = []
        freed = 0
        for entry in self.policy.order(candidates, now_ms=now):
            if freed >= shortfall:
                break
            chosen.append(entry)
            freed += entry.size_bytes
        if freed < shortfall:
            return None
        for entry in chosen:
            self.policy.evicting(entry, now_ms=now)
        return chosen
