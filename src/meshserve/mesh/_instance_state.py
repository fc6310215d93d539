"""An instance's lifecycle: one state, moving one way.

``STARTING`` (joining the mesh, not answering readiness yet) ->
``SERVING`` (set up: ready) -> ``DRAINING`` (SIGTERM: still serving the
requests that come, taking no new copies, moving recent models elsewhere)
-> ``STOPPED`` (left the mesh). A request to move back is ignored: a ready
signal that arrives after draining began must not make the instance serve
again.
"""

from __future__ import annotations

import enum
import logging

__all__ = ["InstanceState", "Lifecycle"]

log = logging.getLogger(__name__)


class InstanceState(enum.IntEnum):
    """In the order an instance goes through them."""

    STARTING = 1
    SERVING = 2
    DRAINING = 3
    STOPPED = 4


class Lifecycle:
    """The current state of one instance, read by its parts."""

    def __init__(self, *, started_ms: int) -> None:
        self._state = InstanceState.STARTING
        self.started_ms = started_ms
        """When the instance started (published in its record)."""

    @property
    def state(self) -> InstanceState:
        return self._state

    def advance(self, state: InstanceState) -> bool:
        """Move to ``state`` if it is later than the current one; whether it moved."""
        if state <= self._state:
            return False
        log.debug("instance %s -> %s", self._state.name, state.name)
        self._state = state
        return True

    @property
    def ready(self) -> bool:
        """Readiness probes: set up and not leaving."""
        return self._state is InstanceState.SERVING

    @property
    def leaving(self) -> bool:
        """Draining or stopped: takes no new copies; others see it shutting down."""
        return self._state >= InstanceState.DRAINING
