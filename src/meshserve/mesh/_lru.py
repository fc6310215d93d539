"""A weighted LRU of loaded models: sizes in bytes against a capacity.

Pure bookkeeping, no I/O: the instance asks it which models to evict before a
load and tells it what happened. Sizes are rounded up to ModelMesh's 8 KiB
accounting unit so that many tiny models cannot pretend to be free.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["UNIT_BYTES", "CacheEntry", "EntryState", "WeightedLru", "round_size"]

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


class WeightedLru:
    """Entries ordered by last use, with their sizes summed against capacity."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
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

    def victims(
        self, *, needed_bytes: int, older_than_ms: int, keep: str | None = None
    ) -> list[CacheEntry] | None:
        """The least recently used loaded entries to evict so that
        ``needed_bytes`` more fit, or None if that is impossible.

        Only entries last used no later than ``older_than_ms`` qualify: a load for a
        request passes "now" (anything older may go), a proactive load passes
        its own, older, timestamp, so it never displaces a model used more
        recently than it. Loading and busy entries never qualify.
        """
        # needed_bytes 0 still frees space when the cache is over capacity
        # (a model measured bigger than predicted).
        shortfall = (round_size(needed_bytes) if needed_bytes > 0 else 0) - self.free_bytes
        if shortfall <= 0:
            return []
        chosen: list[CacheEntry] = []
        freed = 0
        for entry in self.entries():
            if freed >= shortfall:
                break
            if (
                entry.model_id == keep
                or entry.state is not EntryState.LOADED
                or entry.inflight > 0
                or entry.last_used_ms > older_than_ms
            ):
                continue
            chosen.append(entry)
            freed += entry.size_bytes
        return chosen if freed >= shortfall else None
