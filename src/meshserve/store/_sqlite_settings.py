"""Settings of the embedded SQLite store."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SqliteSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SqliteSettings:
    """How the SQLite store polls, waits, sweeps and trims its history."""

    poll_interval: float = 0.05
    """Seconds between checks for writes made by other processes. Writes made
    through this store object wake its watches at once; this bounds how late
    another process's writes are seen (50 ms: cheap, one indexed read)."""

    busy_timeout: float = 5.0
    """Seconds a call waits for another process's write lock before failing
    with StoreUnavailableError. Write transactions are short (milliseconds),
    so 5 s means something is wrong, not merely busy."""

    sweep_interval: float = 0.25
    """Seconds between checks for expired leases. Expired leases are also
    swept by every write, so this bounds how late a lease-bound key of an
    idle store disappears after its TTL."""

    history_max_revisions: int = 10_000
    """Revisions of watch history kept at least, so watches that reconnect
    can resume. Older history is dropped by compaction."""

    history_max_age: float = 3600.0
    """Seconds of watch history kept at most; older events are dropped even
    within ``history_max_revisions`` (a watch that is up to date never needs
    them)."""

    compaction_interval: float = 30.0
    """Seconds between automatic compactions."""

    max_revisions_per_poll: int = 1_000
    """Revisions read per watch poll, bounding memory when a watch catches up."""

    def __post_init__(self) -> None:
        for name in ("poll_interval", "busy_timeout", "sweep_interval", "compaction_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.history_max_revisions < 0 or self.history_max_age < 0:
            raise ValueError("history limits must not be negative")
        if self.max_revisions_per_poll < 1:
            raise ValueError("max_revisions_per_poll must be at least 1")
