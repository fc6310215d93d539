"""etcd3aio's messages and errors in the store's terms: key ranges, ops,
key-values and events converted each way, and the gRPC status of a failure."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import etcd3aio
from etcd3aio import _protobuf as etcdpb

from meshserve.store import _errors
from meshserve.store._etcd_watch import EtcdWatch
from meshserve.store._types import (
    DeleteOp,
    Event,
    EventKind,
    KeyValue,
    LeaseId,
    Op,
    PutOp,
    prefix_range_end,
)

__all__ = [
    "RefusedError",
    "as_store_error",
    "close_stream",
    "event_of",
    "first",
    "key_value",
    "kv_service",
    "lease_service",
    "prefix_range",
    "read_page",
    "request_op",
    "rpc_status",
    "time_to_live",
    "watch_service",
]

_RANGE_PAGE = 1000
"""Keys read per Range call, so a large prefix never exceeds gRPC's 4 MiB
default message limit in one response."""
_DELETE_EVENT = 1
"""mvccpb.Event.EventType.DELETE (etcd3aio does not export the enum)."""


class RefusedError(_errors.StoreError):
    """etcd answered with an error status that has no Store meaning of its own."""

    def __init__(self, *, code: str, details: str) -> None:
        super().__init__(f"etcd refused the request: {code}: {details}")
        self.code = code
        self.details = details


def kv_service(client: etcd3aio.Etcd3Client) -> Any:
    assert client.kv is not None
    return client.kv


def lease_service(client: etcd3aio.Etcd3Client) -> Any:
    assert client.lease is not None
    return client.lease


def watch_service(client: etcd3aio.Etcd3Client) -> Any:
    assert client.watch is not None
    return client.watch


async def read_page(
    client: etcd3aio.Etcd3Client, *, start: bytes, end: bytes, revision: int, timeout: float
) -> Any:
    return await kv_service(client).get(
        start, end, revision=revision, limit=_RANGE_PAGE, timeout=timeout
    )


async def time_to_live(client: etcd3aio.Etcd3Client, *, lease: int, timeout: float) -> int:
    """The lease's remaining seconds; -1 if it does not exist."""
    response = await lease_service(client).time_to_live(lease, timeout=timeout)
    return int(response.TTL)


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """etcd's [key, range_end) for every key starting with ``prefix``."""
    if not prefix:
        # etcd refuses an empty key; "\0" up to "no end" selects every key.
        return b"\0", b"\0"
    start = prefix.encode()
    end = prefix_range_end(start)
    return start, b"\0" if end is None else end


def request_op(op: Op) -> Any:
    if isinstance(op, PutOp):
        return etcdpb.RequestOp(
            request_put=etcdpb.PutRequest(key=op.key.encode(), value=op.value, lease=op.lease or 0)
        )
    if isinstance(op, DeleteOp):
        return etcdpb.RequestOp(request_delete_range=etcdpb.DeleteRangeRequest(key=op.key.encode()))
    start, end = prefix_range(op.prefix)
    return etcdpb.RequestOp(
        request_delete_range=etcdpb.DeleteRangeRequest(key=start, range_end=end)
    )


def key_value(kv: Any) -> KeyValue:
    return KeyValue(
        key=bytes(kv.key).decode(),
        value=bytes(kv.value),
        create_revision=int(kv.create_revision),
        mod_revision=int(kv.mod_revision),
        version=int(kv.version),
        lease=LeaseId(int(kv.lease)) if kv.lease else None,
    )


def event_of(event: Any) -> Event:
    kind = EventKind.DELETE if event.type == _DELETE_EVENT else EventKind.PUT
    prev = key_value(event.prev_kv) if event.HasField("prev_kv") else None
    return Event(kind=kind, kv=key_value(event.kv), prev=prev)


def rpc_status(exc: Exception) -> tuple[str, str] | None:
    """(status code name, details) of a gRPC error, read without importing
    grpc (the store layer may not; etcd3aio raises grpc's errors as is)."""
    if not type(exc).__module__.startswith("grpc"):
        return None
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if not callable(code) or not callable(details):
        return None
    status = code()
    return str(getattr(status, "name", status)), str(details() or "")


def as_store_error(exc: Exception) -> _errors.StoreError | _errors.StoreUnavailableError:
    if isinstance(exc, _errors.StoreError | _errors.StoreUnavailableError):
        return exc
    return _errors.StoreError(f"the watch failed: {exc!r}")


async def first(stream: AsyncIterator[Any], *, timeout: float) -> Any:
    async with asyncio.timeout(timeout):
        return await anext(stream)


async def close_stream(watch: EtcdWatch) -> None:
    stream, watch.stream = watch.stream, None
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()
