"""Whether this instance is in touch with the store, and so whether a peer
missing from its mirror is evidence that the peer is gone.

A peer's records vanish when its lease expires. While this instance cannot
reach the store either, that says nothing about the peer (the store itself
may be down, and etcd renews every lease when it returns); right after the
store comes back, peers need a moment to reconnect and refresh. Until
``grace_s`` after contact is regained, the mesh view keeps the peers and
copies it last knew, and nothing is reloaded for peers that "disappeared".
"""

from __future__ import annotations

import logging

from meshserve._clock import Clock
from meshserve._events import Event

__all__ = ["StoreContact"]

log = logging.getLogger(__name__)


class StoreContact:
    """Fed by whoever talks to the store (the lease keeper, publishing)."""

    def __init__(self, *, clock: Clock, grace_s: float) -> None:
        self._clock = clock
        self._grace_s = grace_s
        self._lost_at: float | None = None
        self._regained_at: float | None = None
        self.lost_event: Event[None] = Event("store-contact-lost")
        """Emitted when contact is lost, before anything else happens: the
        mesh view remembers the mesh as it was."""

    def note(self, reached: bool) -> None:
        """A call reached the store (True) or found it unreachable (False)."""
        if reached:
            self.regained()
        else:
            self.lost()

    def lost(self) -> None:
        if self._lost_at is None:
            self._lost_at = self._clock.monotonic()
            self.lost_event.emit(None)
            log.warning(
                "the store is unreachable: serving with the last known view of the mesh; "
                "no peer counts as gone until %.1f s after it is back",
                self._grace_s,
            )

    def regained(self) -> None:
        if self._lost_at is not None:
            now = self._clock.monotonic()
            log.warning("the store is reachable again after %.1f s", now - self._lost_at)
            self._lost_at = None
            self._regained_at = now

    @property
    def in_contact(self) -> bool:
        return self._lost_at is None

    def absences_are_evidence(self) -> bool:
        """Whether a peer missing from the mirror may be taken as gone: in
        contact with the store, and for at least ``grace_s``."""
        if self._lost_at is not None:
            return False
        regained = self._regained_at
        return regained is None or self._clock.monotonic() - regained >= self._grace_s
