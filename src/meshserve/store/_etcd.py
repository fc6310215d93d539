"""The etcd store: the Store interface over an etcd v3 cluster (etcd3aio)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import etcd3aio

# etcd3aio builds Compare and RequestOp messages only for value, version and
# create-revision guards; the mod-revision guard the Store contract needs is
# built from etcd's own messages, which the library keeps in this module.
from etcd3aio import _protobuf as etcdpb

from meshserve import _tasks
from meshserve._clock import Clock, SystemClock
from meshserve.store import _errors
from meshserve.store import _etcd_wire as wire
from meshserve.store._etcd_settings import EtcdSettings
from meshserve.store._etcd_watch import EtcdWatch
from meshserve.store._store import Store
from meshserve.store._types import (
    Compare,
    KeyValue,
    LeaseId,
    Op,
    PutOp,
    RangeResult,
    TxnResult,
    WatchStream,
    check_key,
    check_txn,
)

__all__ = ["EtcdStore"]

_log = logging.getLogger("meshserve.store")
_T = TypeVar("_T")


_LEASE_NOT_FOUND = "requested lease not found"
_COMPACTED = "required revision has been compacted"
_FUTURE = "required revision is a future revision"
_UNAVAILABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
_WATCH_RETRY_DELAY = 0.25


class EtcdStoreState(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class EtcdStore(Store):
    """The coordination store in etcd, shared by every process of a mesh.

    Revisions, leases, compaction and watches are etcd's own. Writes are sent
    once (a retried compare-and-swap that had in fact applied would report a
    false conflict); reads are retried by etcd3aio on transient errors. A
    watch is fed by a task of its own, which resumes a broken stream from the
    first revision it has not delivered.
    """

    def __init__(self, *, settings: EtcdSettings, clock: Clock) -> None:
        """Prefer ``EtcdStore.open``; a store made here is not usable yet."""
        self._settings = settings
        self._clock = clock
        self._state = EtcdStoreState.NEW
        self._client: etcd3aio.Etcd3Client | None = None
        self._token_refresher: contextlib.AbstractAsyncContextManager[Any] | None = None
        self._pumps: dict[EtcdWatch, asyncio.Task[None]] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: EtcdSettings, *, clock: Clock | None = None
    ) -> AsyncIterator[EtcdStore]:
        """Connect to etcd (failing with StoreUnavailableError if it does not
        answer within ``settings.request_timeout``), and disconnect on exit."""
        store = cls(settings=settings, clock=SystemClock() if clock is None else clock)
        await store._open()
        try:
            yield store
        finally:
            await store._close()

    @property
    def state(self) -> EtcdStoreState:
        return self._state

    @property
    def settings(self) -> EtcdSettings:
        return self._settings

    @property
    def clock(self) -> Clock:
        """Only measures time for lease keepers; etcd's own clock expires leases."""
        return self._clock

    # -- lifecycle -------------------------------------------------------------

    async def _open(self) -> None:
        if self._state is not EtcdStoreState.NEW:
            raise RuntimeError(f"cannot open a store that is {self._state.value}")
        settings = self._settings
        client = etcd3aio.Etcd3Client(
            settings.grpc_endpoints,
            tls_server_name=settings.override_authority,
            ca_cert=_read(settings.ca_cert),
            cert_key=_read(settings.cert_key),
            cert_chain=_read(settings.cert_chain),
            watch_reconnect_backoff_seconds=settings.reconnect_backoff_initial,
            watch_max_reconnect_backoff_seconds=settings.reconnect_backoff_max,
        )
        # etcd3aio builds its channel with fixed options and no way to add
        # any; the list is read when ``connect`` makes the channel.
        client._manager.grpc_options.extend(settings.channel_options)
        await client.connect()
        self._client = client
        self._state = EtcdStoreState.OPEN
        try:
            if settings.username is not None and settings.password is not None:
                refresher = client.token_refresher(
                    settings.username, settings.password, interval=settings.token_refresh_interval
                )
                await self._rpc(lambda _: refresher.__aenter__())
                self._token_refresher = refresher
            await self._wait_reachable()
        except BaseException:
            await self._close()
            raise

    async def _wait_reachable(self) -> None:
        deadline = time.monotonic() + self._settings.connect_timeout
        while True:
            try:
                await self.current_revision()
                return
            except _errors.StoreUnavailableError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _close(self) -> None:
        if self._state is not EtcdStoreState.OPEN:
            return
        self._state = EtcdStoreState.CLOSED
        for watch, task in list(self._pumps.items()):
            await _tasks.cancel_and_wait(task)
            watch.fail(_errors.StoreClosedError("the store was closed"))
        self._pumps.clear()
        if self._token_refresher is not None:
            with contextlib.suppress(Exception):
                await self._token_refresher.__aexit__(None, None, None)
            self._token_refresher = None
        client, self._client = self._client, None
        assert client is not None
        await client.close()

    def _open_client(self) -> etcd3aio.Etcd3Client:
        if self._state is not EtcdStoreState.OPEN or self._client is None:
            raise _errors.StoreClosedError(f"the store is {self._state.value}")
        return self._client

    async def _rpc(self, call: Callable[[etcd3aio.Etcd3Client], Awaitable[_T]]) -> _T:
        """Run one call and raise what it fails with as the Store's errors."""
        client = self._open_client()
        try:
            return await call(client)
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, _errors.StoreError | _errors.StoreUnavailableError | ValueError):
            return exc
        if self._state is not EtcdStoreState.OPEN:
            return _errors.StoreClosedError("the store was closed during the call")
        if isinstance(exc, etcd3aio.EtcdConnectionError | etcd3aio.EtcdTransientError):
            return _errors.StoreUnavailableError(f"etcd is unavailable: {exc}")
        if isinstance(exc, TimeoutError):
            return _errors.StoreUnavailableError(
                f"etcd did not answer within {self._settings.request_timeout} s"
            )
        if isinstance(exc, etcd3aio.EtcdError):
            return _errors.StoreError(f"etcd refused the request: {exc}")
        status = wire.rpc_status(exc)
        if status is None:
            return exc
        code, details = status
        if code in _UNAVAILABLE_CODES:
            return _errors.StoreUnavailableError(f"etcd is unavailable: {code}: {details}")
        return wire.RefusedError(code=code, details=details)

    @property
    def _timeout(self) -> float:
        return self._settings.request_timeout

    # -- reads -----------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        check_key(key)
        response = await self._rpc(lambda c: wire.kv_service(c).get(key, timeout=self._timeout))
        return wire.key_value(response.kvs[0]) if response.kvs else None

    async def range(self, prefix: str) -> RangeResult:
        start, end = wire.prefix_range(prefix)
        kvs: list[KeyValue] = []
        revision = 0
        while True:
            response = await self._rpc(
                functools.partial(
                    wire.read_page, start=start, end=end, revision=revision, timeout=self._timeout
                )
            )
            # Later pages read at the first page's revision: one snapshot.
            revision = revision or int(response.header.revision)
            kvs.extend(wire.key_value(kv) for kv in response.kvs)
            if not response.more or not response.kvs:
                return RangeResult(kvs=tuple(kvs), revision=revision)
            start = bytes(response.kvs[-1].key) + b"\0"

    async def current_revision(self) -> int:
        # An empty transaction: a linearizable read of the header that needs
        # no key permission, so a user granted only a prefix can open the store.
        response = await self._rpc(lambda c: wire.kv_service(c).txn([], [], timeout=self._timeout))
        return int(response.header.revision)

    # -- writes ----------------------------------------------------------------

    async def put(self, key: str, value: bytes, *, lease: LeaseId | None = None) -> int:
        check_key(key)
        try:
            response = await self._rpc(
                lambda c: wire.kv_service(c).put(
                    key.encode(), value, lease=lease or 0, timeout=self._timeout, max_attempts=1
                )
            )
        except wire.RefusedError as exc:
            if lease is not None and _LEASE_NOT_FOUND in exc.details:
                raise _errors.LeaseExpiredError(lease) from exc
            raise
        return int(response.header.revision)

    async def delete(self, key: str) -> bool:
        check_key(key)
        response = await self._rpc(
            lambda c: wire.kv_service(c).delete(key.encode(), timeout=self._timeout, max_attempts=1)
        )
        return int(response.deleted) > 0

    async def delete_prefix(self, prefix: str) -> int:
        start, end = wire.prefix_range(prefix)
        response = await self._rpc(
            lambda c: wire.kv_service(c).delete(start, end, timeout=self._timeout, max_attempts=1)
        )
        return int(response.deleted)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        check_txn(ops)
        guards = [
            etcdpb.Compare(
                result=etcdpb.Compare.EQUAL,
                target=etcdpb.Compare.MOD,
                key=c.key.encode(),
                mod_revision=c.mod_revision,
            )
            for c in compares
        ]
        requests = [wire.request_op(op) for op in ops]
        try:
            response = await self._rpc(
                lambda c: wire.kv_service(c).txn(
                    guards, requests, timeout=self._timeout, max_attempts=1
                )
            )
        except wire.RefusedError as exc:
            if _LEASE_NOT_FOUND in exc.details:
                raise _errors.LeaseExpiredError(await self._dead_lease(ops)) from exc
            raise
        return TxnResult(succeeded=bool(response.succeeded), revision=int(response.header.revision))

    async def _dead_lease(self, ops: Sequence[Op]) -> int:
        """Which lease of ``ops`` etcd did not find (etcd's error does not say)."""
        leases = list(dict.fromkeys(op.lease for op in ops if isinstance(op, PutOp) and op.lease))
        for lease in leases[:-1]:
            probe = functools.partial(wire.time_to_live, lease=lease, timeout=self._timeout)
            if await self._rpc(probe) < 0:
                return lease
        return leases[-1] if leases else 0

    async def compact(self, revision: int) -> None:
        if revision < 1:
            raise ValueError("a compaction revision must be at least 1")
        try:
            await self._rpc(lambda c: wire.kv_service(c).compact(revision, timeout=self._timeout))
        except wire.RefusedError as exc:
            if _FUTURE in exc.details:
                raise ValueError(f"cannot compact future revision {revision}") from exc
            if _COMPACTED in exc.details:
                return
            raise

    # -- leases ----------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> LeaseId:
        if ttl <= 0:
            raise ValueError("a lease TTL must be positive")
        # etcd counts whole seconds and raises anything under its minimum
        # (~2 s with default election settings) to that minimum itself.
        seconds = math.ceil(ttl)
        response = await self._rpc(
            lambda c: wire.lease_service(c).grant(seconds, timeout=self._timeout, max_attempts=1)
        )
        return LeaseId(int(response.ID))

    async def keepalive(self, lease: LeaseId) -> None:
        async def refresh(client: etcd3aio.Etcd3Client) -> int:
            call = wire.lease_service(client).keep_alive(lease)
            try:
                async with asyncio.timeout(self._timeout):
                    async for response in call:
                        return int(response.TTL)
            finally:
                call.cancel()
            raise _errors.StoreUnavailableError("etcd ended a lease keepalive without answer")

        if await self._rpc(refresh) <= 0:
            raise _errors.LeaseExpiredError(lease)

    async def revoke_lease(self, lease: LeaseId) -> None:
        try:
            await self._rpc(
                lambda c: wire.lease_service(c).revoke(lease, timeout=self._timeout, max_attempts=1)
            )
        except wire.RefusedError as exc:
            if _LEASE_NOT_FOUND not in exc.details:
                raise

    # -- watch -----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, prefix: str, *, start_revision: int | None = None
    ) -> AsyncIterator[WatchStream]:
        if start_revision is not None and start_revision < 1:
            raise ValueError("start_revision must be at least 1")
        self._open_client()
        watch = EtcdWatch(prefix=prefix, next_revision=start_revision or 0)
        try:
            created = await self._start_stream(watch)
            if start_revision is None:
                watch.next_revision = created + 1
            elif start_revision <= created:
                await self._check_history(watch)
            task = _tasks.start_supervised(self._pump(watch), name=f"etcd-watch:{prefix}")
            self._pumps[watch] = task
            try:
                yield watch
            finally:
                self._pumps.pop(watch, None)
                await _tasks.cancel_and_wait(task)
        finally:
            await wire.close_stream(watch)

    async def _start_stream(self, watch: EtcdWatch) -> int:
        """(Re)open ``watch``'s etcd stream from its next revision; return the
        revision etcd created it at."""
        await wire.close_stream(watch)
        start, end = wire.prefix_range(watch.prefix)
        client = self._open_client()
        stream = wire.watch_service(client).watch(
            start, end, start_revision=watch.next_revision, prev_kv=True, progress_notify=True
        )
        watch.stream = stream
        response = await self._rpc(lambda _: wire.first(stream, timeout=self._timeout))
        if response.canceled:
            raise _errors.StoreError(f"etcd refused the watch: {response.cancel_reason}")
        return int(response.header.revision)

    async def _check_history(self, watch: EtcdWatch) -> None:
        """Fail now, not on the first read, if the history to replay is gone.

        A range read at ``next_revision - 1`` succeeds exactly when etcd still
        has every revision from ``next_revision`` on. Only the watch itself
        tells the compaction revision; etcd sends it within ~100 ms.
        """
        requested = watch.next_revision
        start, end = wire.prefix_range(watch.prefix)
        try:
            await self._rpc(
                lambda c: wire.kv_service(c).get(
                    start,
                    end,
                    revision=max(requested - 1, 1),
                    count_only=True,
                    timeout=self._timeout,
                )
            )
            return
        except wire.RefusedError as exc:
            if _COMPACTED not in exc.details:
                raise
        compact_revision = requested
        assert watch.stream is not None
        with contextlib.suppress(TimeoutError, StopAsyncIteration):
            response = await wire.first(watch.stream, timeout=self._timeout)
            compact_revision = max(compact_revision, int(response.compact_revision))
        raise _errors.CompactedError(
            requested_revision=requested, compact_revision=compact_revision
        )

    async def _pump(self, watch: EtcdWatch) -> None:
        """Read etcd's stream into ``watch``, reopening it when it breaks."""
        while True:
            try:
                await self._read_stream(watch)
            except _errors.StoreUnavailableError as exc:
                _log.info("watch on %r broke, resuming: %s", watch.prefix, exc)
            except Exception as exc:
                watch.fail(wire.as_store_error(self._translate(exc)))
                return
            await asyncio.sleep(_WATCH_RETRY_DELAY)
            while True:
                try:
                    await self._start_stream(watch)
                    break
                except _errors.StoreUnavailableError as exc:
                    _log.info("watch on %r cannot resume yet: %s", watch.prefix, exc)
                    await asyncio.sleep(_WATCH_RETRY_DELAY)
                except Exception as exc:
                    watch.fail(wire.as_store_error(self._translate(exc)))
                    return

    async def _read_stream(self, watch: EtcdWatch) -> None:
        """Deliver responses until the stream needs reopening (returns or
        raises StoreUnavailableError) or the watch must end (raises)."""
        stream = watch.stream
        assert stream is not None
        try:
            async for response in stream:
                if response.created:
                    # etcd3aio reconnected by itself, from the revision after
                    # the last header it saw, which can skip events a
                    # catching-up watch had not been sent; reopen from ours.
                    return
                if response.compact_revision:
                    raise _errors.CompactedError(
                        requested_revision=watch.next_revision,
                        compact_revision=int(response.compact_revision),
                    )
                if response.canceled:
                    raise _errors.StoreError(f"etcd cancelled the watch: {response.cancel_reason}")
                if response.events:
                    watch.deliver(tuple(wire.event_of(e) for e in response.events))
                else:
                    watch.caught_up(int(response.header.revision))
        except Exception as exc:
            raise self._translate(exc) from exc


def _read(path: str | os.PathLike[str] | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as file:
        return file.read()
