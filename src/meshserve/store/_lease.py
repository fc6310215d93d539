"""A lease kept alive by an owned background task."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Callable
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
    """The store said it expired (or was revoked) while kept: its keys are gone."""
    RELEASED = "released"
    """Its owner left the ``async with`` block and revoked it."""


class KeptLease:
    """A granted lease refreshed every ``refresh_interval`` seconds.

    Made by ``Store.lease``; its ``keep`` coroutine runs in a task owned by
    that context manager.

    Only the store's answer loses a lease: while the store cannot be
    reached, the keeper keeps trying (every ``refresh_interval / 4``), for
    however long. An unreachable store expires nothing (etcd renews every
    lease when it comes back); if the store did expire it meanwhile (we
    alone were cut off), the first refresh that reaches it says so.
    ``on_contact`` (set by the owner) hears whether each refresh reached
    the store.
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
        self.on_contact: Callable[[bool], object] | None = None
        """Called after each refresh: True if it reached the store, False if
        the store was unreachable."""

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

    def _contact(self, reached: bool) -> None:
        if self.on_contact is not None:
            try:
                self.on_contact(reached)
            except Exception:
                _log.exception("a lease contact listener failed")

    async def keep(self) -> None:
        clock = self._store.clock
        last_refresh = clock.monotonic()
        delay = self.refresh_interval
        warned = False
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
                self._contact(True)
                self._mark(LeaseState.LOST)
                return
            except errors.UnavailableError as exc:
                # Not evidence the lease is gone: the store may hold it still
                # (an etcd that was down renews every lease on its return).
                if clock.monotonic() - last_refresh >= self.ttl and not warned:
                    warned = True
                    _log.warning(
                        "lease %#x not refreshed for %.1f s (its TTL is %.1f s), still trying: %s",
                        self.id,
                        clock.monotonic() - last_refresh,
                        self.ttl,
                        exc,
                    )
                elif not warned:
                    _log.info("lease %#x refresh failed, retrying: %s", self.id, exc)
                self._contact(False)
                delay = self.refresh_interval / 4
            else:
                if delay != self.refresh_interval:
                    _log.info("lease %#x refreshed again", self.id)
                last_refresh = clock.monotonic()
                warned = False
                self._contact(True)
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
