"""How long a forward to another instance may take: the hop deadline.

A forward to a loaded copy gets a share of the client's remaining time
(``hop_deadline_fraction``, bounded by ``hop_deadline_min_s`` and
``hop_deadline_max_s``; ``hop_deadline_default_s`` without a client
deadline), so a peer that hangs costs one hop and the request is retried
elsewhere within the client's deadline. A forward that makes the peer load
the model first may take what the client allows, up to
``forward_timeout_s``: loads are slow, and a peer that hangs meanwhile is
dropped when its lease goes (:class:`Forwards` watches it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from meshserve._clock import Clock
from meshserve.errors import PeerTimeoutError, PeerUnreachableError
from meshserve.mesh._background import Spawn
from meshserve.registry import Registry
from meshserve.settings import MeshSettings

__all__ = ["ClientDeadline", "Forwards", "hop_timeout"]

T = TypeVar("T")

_LEASE_CHECK_S = 0.1
"""How often a peer's watcher checks that it still holds its lease (the
registry's mirror, in memory: cheap)."""

_WATCH_IDLE_S = 30.0
"""A peer's watcher ends after this long with no forward in flight to it
(the next forward starts another): steady traffic keeps one alive."""


class ClientDeadline:
    """The client's deadline on this instance's clock (maybe none)."""

    def __init__(self, timeout_s: float | None, *, clock: Clock) -> None:
        """``timeout_s``: the time the client left when its call arrived."""
        self._clock = clock
        self._at = None if timeout_s is None else clock.monotonic() + timeout_s

    def remaining(self) -> float | None:
        """Seconds left (None: no deadline)."""
        if self._at is None:
            return None
        return max(0.0, self._at - self._clock.monotonic())

    def passed(self) -> bool:
        return self._at is not None and self._clock.monotonic() >= self._at


def hop_timeout(remaining_s: float | None, *, loading: bool, settings: MeshSettings) -> float:
    """Seconds a forward may take. ``remaining_s``: the client's time left
    (None: it set no deadline); ``loading``: the peer loads the model first.
    Never more than the client has left."""
    if loading:
        limit = settings.forward_timeout_s
    elif remaining_s is None:
        limit = settings.hop_deadline_default_s
    else:
        share = remaining_s * settings.hop_deadline_fraction
        limit = min(max(share, settings.hop_deadline_min_s), settings.hop_deadline_max_s)
    if remaining_s is None:
        return limit
    return max(0.0, min(limit, remaining_s))


class Forwards:
    """Forwards in flight, per peer, cut when ``timeout_s`` passes
    (PeerTimeoutError) or when the peer's lease goes (PeerUnreachableError).

    A forward runs in its caller's task: nothing is created per request but
    a timer. One watcher per peer (spawned with the first forward to it, gone
    once the peer has had no forward in flight for ``_WATCH_IDLE_S`` or its
    lease went) checks the lease and cancels that peer's forwards in flight
    when it is gone.
    """

    def __init__(self, *, registry: Registry, spawn: Spawn) -> None:
        self._registry = registry
        self._spawn = spawn
        self._watched: dict[str, _Watched] = {}

    def watched(self) -> frozenset[str]:
        """The peers with a lease watcher."""
        return frozenset(self._watched)

    async def call(self, call: Callable[[], Awaitable[T]], *, peer: str, timeout_s: float) -> T:
        """``call()`` to ``peer``, cut as the class says."""
        if self._registry.instance(peer) is None:
            raise _left(peer)
        task = asyncio.current_task()
        assert task is not None, "a forward runs in a task"
        forward = _Forward(task)
        watched = self._watched.get(peer)
        if watched is None:
            watched = self._watched[peer] = _Watched()
            self._spawn(self._watch(peer, watched), name=f"lease-watch:{peer}")
        watched.in_flight.add(forward)
        watched.used = True
        try:
            async with asyncio.timeout(timeout_s):
                return await call()
        except TimeoutError:
            raise PeerTimeoutError(
                f"instance {peer} did not answer within {timeout_s:.2f} s"
            ) from None
        except asyncio.CancelledError:
            # Only the watcher's own cancel becomes an error; one from
            # outside (the client went) stays a cancel.
            if forward.cut and task.uncancel() <= forward.cancelling:
                raise _left(peer) from None
            raise
        finally:
            watched.in_flight.discard(forward)

    async def _watch(self, peer: str, watched: _Watched) -> None:
        idle_s = 0.0
        try:
            while idle_s < _WATCH_IDLE_S:
                await asyncio.sleep(_LEASE_CHECK_S)
                if self._registry.instance(peer) is None:
                    for forward in watched.in_flight:
                        forward.cut_off()
                    return
                busy = watched.used or watched.in_flight
                watched.used = False
                idle_s = 0.0 if busy else idle_s + _LEASE_CHECK_S
        finally:
            # No await since the last check: a forward starting after this
            # finds no watcher and spawns a new one.
            if self._watched.get(peer) is watched:
                del self._watched[peer]


class _Watched:
    """A peer's forwards in flight, and whether one started since the
    watcher's last check."""

    __slots__ = ("in_flight", "used")

    def __init__(self) -> None:
        self.in_flight: set[_Forward] = set()
        self.used = False


class _Forward:
    """One forward in flight, in ``task``."""

    __slots__ = ("cancelling", "cut", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.cut = False

    def cut_off(self) -> None:
        if not self.cut:
            self.cut = True
            self.task.cancel()


def _left(peer: str) -> PeerUnreachableError:
    return PeerUnreachableError(f"instance {peer} left the mesh while the request was in flight")
