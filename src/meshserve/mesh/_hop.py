"""How long a forward to another instance may take: the hop deadline.

A forward to a loaded copy gets a share of the client's remaining time
(``hop_deadline_fraction``, bounded by ``hop_deadline_min_s`` and
``hop_deadline_max_s``; ``hop_deadline_default_s`` without a client
deadline), so a peer that hangs costs one hop and the request is retried
elsewhere within the client's deadline. A forward that makes the peer load
the model first may take what the client allows, up to
``forward_timeout_s``: loads are slow, and a peer that hangs meanwhile is
dropped when its lease goes (:func:`forward_within` watches it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from meshserve._clock import Clock
from meshserve.errors import PeerTimeoutError, PeerUnreachableError
from meshserve.registry import Registry
from meshserve.settings import MeshSettings

__all__ = ["ClientDeadline", "forward_within", "hop_timeout"]

T = TypeVar("T")

_LEASE_CHECK_S = 0.1
"""How often a forward in flight checks that its peer still holds its lease
(the registry's mirror, in memory: cheap)."""


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


async def forward_within(
    call: Awaitable[T], *, peer: str, timeout_s: float, registry: Registry
) -> T:
    """``call`` to ``peer``, cut when ``timeout_s`` passes (PeerTimeoutError)
    or when the peer's lease goes while it is in flight (PeerUnreachableError)."""
    forward = asyncio.ensure_future(call)
    left = asyncio.ensure_future(_lease_gone(peer, registry))
    try:
        done, _ = await asyncio.wait(
            {forward, left}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        left.cancel()
        forward.cancel()  # a no-op once it is done
    if forward in done:
        return forward.result()
    if left in done:
        raise PeerUnreachableError(f"instance {peer} left the mesh while the request was in flight")
    raise PeerTimeoutError(f"instance {peer} did not answer within {timeout_s:.2f} s")


async def _lease_gone(peer: str, registry: Registry) -> None:
    """Return once ``peer`` no longer holds its lease (its record is gone)."""
    while registry.instance(peer) is not None:
        await asyncio.sleep(_LEASE_CHECK_S)
