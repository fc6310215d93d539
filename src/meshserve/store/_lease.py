"""A lease kept alive by an owned background task."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from meshserve import _tasks, errors
from meshserve._clock import Clock
from meshserve.store import _errors
from meshserve.store._types import LeaseId

__all__ = ["KeptLease", "LeaseCalls", "LeaseState", "keep_lease"]

_log = logging.getLogger("meshserve.store")


class LeaseCalls(Protocol):
    """The lease calls of a store (``Store`` has them), named here so that
    this module need not import the store's."""

    @property
    def clock(self) -> Clock: ...

    async def grant_lease(self, ttl: float) -> LeaseId: ...

    async def keepalive(self, lease: LeaseId) -> None: ...

    async def revoke_lease(self, lease: LeaseId) -> None: ...


class LeaseState(enum.Enum):
    ALIVE = "alive"
    LOST = "lost"
    """It expired (or was revoked) while kept: its keys are gone."""
    RELEASED = "released"
    """Its owner left the ``async with`` block and revoked it."""


class KeptLease:
    """A granted lease refreshed every ``refresh_interval`` seconds.

    Made by ``Store.lease``; its ``keep`` coroutine runs in a task owned by
    that context manager.
    """

    def __init__(
        self, *, store: LeaseCalls, lease_id: LeaseId, ttl: float, refresh_interval: float
    ) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.refresh_interval = refresh_interval
        self._store = store
        self._state = LeaseState.ALIVE
        self._lost = asyncio.Event()

    @property
    def state(self) -> LeaseState:
        return self._state

    @property
    def is_alive(self) -> bool:
        return self._state is LeaseState.ALIVE

    async def wait_lost(self) -> None:
        """Return once the lease has expired or been revoked behind our back."""
        await self._lost.wait()

    async def revoke(self) -> None:
        """Give the lease up now (its keys go at once), as its owner: the
        keeper stops refreshing it quietly, and leaving the ``async with``
        block has nothing left to revoke. Best effort, like that block: if
        the store is unreachable, the lease expires after its TTL."""
        if self._state is not LeaseState.ALIVE:
            return
        self._mark(LeaseState.RELEASED)
        with contextlib.suppress(_errors.StoreError, errors.UnavailableError):
            await self._store.revoke_lease(self.id)

    def _mark(self, state: LeaseState) -> None:
        if self._state is LeaseState.ALIVE:
            self._state = state
            if state is LeaseState.LOST:
                self._lost.set()

    async def keep(self) -> None:
        clock = self._store.clock
        last_refresh = clock.monotonic()
        delay = self.refresh_interval
        while True:
            await asyncio.sleep(delay)
            if self._state is not LeaseState.ALIVE:
                return  # released by its owner (``revoke``)
            try:
                await self._store.keepalive(self.id)
            except _errors.LeaseExpiredError:
                if self._state is not LeaseState.ALIVE:
                    return  # revoked by its owner while this refresh was on its way
                _log.warning("lease %#x expired while kept alive", self.id)
                self._mark(LeaseState.LOST)
                return
            except errors.UnavailableError as exc:
                # The store may still hold the lease; only once a whole TTL
                # has passed without a refresh can we be sure it is gone.
                if clock.monotonic() - last_refresh >= self.ttl:
                    _log.warning("lease %#x not refreshed for its whole TTL: %s", self.id, exc)
                    self._mark(LeaseState.LOST)
                    return
                _log.info("lease %#x refresh failed, retrying: %s", self.id, exc)
                delay = self.refresh_interval / 4
            else:
                last_refresh = clock.monotonic()
                delay = self.refresh_interval


@contextlib.asynccontextmanager
async def keep_lease(
    store: LeaseCalls, *, ttl: float, refresh_interval: float | None
) -> AsyncIterator[KeptLease]:
    """The body of ``Store.lease`` (see there)."""
    interval = ttl / 3 if refresh_interval is None else refresh_interval
    if interval <= 0 or interval >= ttl:
        raise ValueError("refresh_interval must be positive and shorter than the TTL")
    lease_id = await store.grant_lease(ttl)
    kept = KeptLease(store=store, lease_id=lease_id, ttl=ttl, refresh_interval=interval)
    keeper = _tasks.start_supervised(kept.keep(), name=f"lease-keeper-{lease_id:#x}")
    try:
        yield kept
    finally:
        await _tasks.cancel_and_wait(keeper)
        await kept.revoke()
