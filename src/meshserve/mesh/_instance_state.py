"""An instance's lifecycle: one state, moving one way.

``STARTING`` (joining the mesh, not answering readiness yet) ->
``SERVING`` (set up: ready) -> ``LAME_DUCK`` (SIGTERM: not ready, and the
other instances told to route elsewhere, but still serving every request
that comes, for ``server.lameDuckS``, while load balancers catch up) ->
``DRAINING`` (still serving, taking no new copies, moving recent models
elsewhere) -> ``STOPPED`` (left the mesh). A request to move back is
ignored: a ready signal that arrives after stopping began must not make the
instance ready again.
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
    LAME_DUCK = 3
    DRAINING = 4
    STOPPED = 5


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
        """Readiness (v2 ServerReady, ``/v2/health/ready``): set up and not
        leaving. The one answer every readiness check gives."""
        return self._state is InstanceState.SERVING

    @property
    def leaving(self) -> bool:
        """In lame duck or later: others see it shutting down (placement and
        routing go elsewhere when they can) and it adds no copies of its own."""
        return self._state >= InstanceState.LAME_DUCK

    @property
    def draining(self) -> bool:
        """Draining or stopped: it refuses new copies others would place here
        (in lame duck it still takes one, placed here only when no other
        instance could take it)."""
        return self._state >= InstanceState.DRAINING
