"""Leader election on any ``Store``: a latch key created-if-absent with a lease.

The candidate that creates ``<key_prefix><name>`` (value: its candidate id,
attached to its lease) leads until the key changes or the lease is lost;
the others watch the key and try again when it is deleted. Because it uses
only ``put_if``, ``watch`` and leases, every backend gets it for free.

Leadership is a belief, not a lock: a stalled leader may still think it
leads for up to one refresh interval after its lease expired. Writes that
must only come from the leader can be fenced by comparing the latch key's
mod_revision (``Election.term``) in the same transaction.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from types import TracebackType

from meshserve import _tasks, errors
from meshserve.store import _errors
from meshserve.store._lease import KeptLease
from meshserve.store._store import Store

__all__ = ["Election", "ElectionState"]

_log = logging.getLogger("meshserve.store")


class ElectionState(enum.Enum):
    IDLE = "idle"
    """Not entered yet."""
    CAMPAIGNING = "campaigning"
    LEADER = "leader"
    CLOSED = "closed"


class Election:
    """Campaign for leadership of ``name`` while inside ``async with``.

    A candidate that loses leadership (lease lost, latch key changed) waits
    ``rejoin_delay`` seconds and campaigns again, so that candidates already
    waiting get the first chance. Leaving the block resigns (revokes the
    lease, which deletes the latch key) so another candidate takes over at
    once.
    """

    def __init__(
        self,
        store: Store,
        *,
        name: str,
        candidate_id: str,
        ttl: float,
        key_prefix: str = "leaderLatch/",
        rejoin_delay: float = 1.0,
        retry_interval: float = 0.5,
    ) -> None:
        if ttl <= 0 or rejoin_delay < 0 or retry_interval <= 0:
            raise ValueError("ttl and retry_interval must be positive, rejoin_delay not negative")
        self._store = store
        self._key = f"{key_prefix}{name}"
        self._candidate_id = candidate_id
        self._ttl = ttl
        self._rejoin_delay = rejoin_delay
        self._retry_interval = retry_interval
        self._state = ElectionState.IDLE
        self._term: int | None = None
        self._leading = asyncio.Event()
        self._not_leading = asyncio.Event()
        self._not_leading.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def key(self) -> str:
        """The latch key (relative to the store it was given)."""
        return self._key

    @property
    def candidate_id(self) -> str:
        return self._candidate_id

    @property
    def state(self) -> ElectionState:
        return self._state

    @property
    def is_leader(self) -> bool:
        return self._state is ElectionState.LEADER

    @property
    def term(self) -> int | None:
        """While leading: the latch key's mod_revision, a fencing token."""
        return self._term

    async def wait_until_leader(self) -> None:
        """Return once this candidate leads (at once if it does); never after exit."""
        await self._leading.wait()

    async def wait_until_not_leader(self) -> None:
        await self._not_leading.wait()

    async def leader(self) -> str | None:
        """The candidate id of the current leader, from the store."""
        kv = await self._store.get(self._key)
        return None if kv is None else kv.value.decode()

    async def __aenter__(self) -> Election:
        if self._state is not ElectionState.IDLE:
            raise RuntimeError("an Election can be entered once")
        self._state = ElectionState.CAMPAIGNING
        self._task = _tasks.start_supervised(self._campaign(), name=f"election:{self._key}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        await _tasks.cancel_and_wait(self._task)
        self._follow()
        self._state = ElectionState.CLOSED

    def _lead(self, term: int) -> None:
        _log.info("%s leads %s (term %d)", self._candidate_id, self._key, term)
        self._state = ElectionState.LEADER
        self._term = term
        self._not_leading.clear()
        self._leading.set()

    def _follow(self) -> None:
        if self._state is ElectionState.LEADER:
            _log.info("%s no longer leads %s", self._candidate_id, self._key)
            self._state = ElectionState.CAMPAIGNING
        self._term = None
        self._leading.clear()
        self._not_leading.set()

    async def _campaign(self) -> None:
        while True:
            delay = self._retry_interval
            try:
                async with self._store.lease(self._ttl) as lease:
                    if await self._campaign_with(lease):
                        delay = self._rejoin_delay
            except (_errors.LeaseExpiredError, _errors.CompactedError) as exc:
                _log.info("election %s: %s; campaigning again", self._key, exc)
            except errors.UnavailableError as exc:
                _log.warning("election %s: store unavailable: %s", self._key, exc)
            finally:
                self._follow()
            await asyncio.sleep(delay)

    async def _campaign_with(self, lease: KeptLease) -> bool:
        """Campaign until leadership was won and lost again (True) or the lease was lost."""
        value = self._candidate_id.encode()
        while lease.is_alive:
            term = await self._store.put_if(
                self._key, value, expected_mod_revision=0, lease=lease.id
            )
            if term is not None:
                self._lead(term)
                await _tasks.first_of(self._until_key_changes(term), lease.wait_lost())
                return True
            kv = await self._store.get(self._key)
            if kv is not None:
                await _tasks.first_of(self._until_key_changes(kv.mod_revision), lease.wait_lost())
        return False

    async def _until_key_changes(self, mod_revision: int) -> None:
        """Return once the latch key is no longer at ``mod_revision``."""
        start = mod_revision + 1
        while True:
            try:
                async with self._store.watch(self._key, start_revision=start) as events:
                    async for batch in events:
                        if any(e.kv.key == self._key for e in batch):
                            return
                return
            except _errors.CompactedError:
                listed = await self._store.range(self._key)
                current = next((kv for kv in listed.kvs if kv.key == self._key), None)
                if current is None or current.mod_revision != mod_revision:
                    return
                start = listed.revision + 1
