"""The coordination store: etcd's data model behind one async interface.

``Store`` is the interface (revisions, compare-and-swap, leases, watches);
``SqliteStore`` the embedded backend for one machine; ``PrefixedStore``
isolates meshes sharing a store under a root prefix; ``Election`` elects a
leader on any of them; ``open_store`` opens the one the settings name.

    async with SqliteStore.open(path) as store:
        revision = await store.put("a/x", b"1")
        async with store.watch("a/", start_revision=revision) as events:
            async for batch in events:
                ...
"""

from typing import TYPE_CHECKING, Any

from meshserve._clock import Clock, ManualClock, SystemClock
from meshserve.store._election import Election, ElectionState
from meshserve.store._errors import (
    CompactedError,
    LeaseExpiredError,
    StoreClosedError,
    StoreError,
    StoreUnavailableError,
)
from meshserve.store._etcd_settings import EtcdSettings
from meshserve.store._factory import etcd_settings, open_store, store_url
from meshserve.store._lease import KeptLease, LeaseState
from meshserve.store._prefixed import PrefixedStore
from meshserve.store._sqlite import SqliteStore, StoreState
from meshserve.store._sqlite_settings import SqliteSettings
from meshserve.store._store import Store

if TYPE_CHECKING:
    from meshserve.store._etcd import EtcdStore, EtcdStoreState
from meshserve.store._types import (
    Compare,
    DeleteOp,
    DeletePrefixOp,
    Event,
    EventKind,
    KeyValue,
    LeaseId,
    Op,
    PutOp,
    RangeResult,
    TxnResult,
    WatchStream,
)

__all__ = [
    "Clock",
    "CompactedError",
    "Compare",
    "DeleteOp",
    "DeletePrefixOp",
    "Election",
    "ElectionState",
    "EtcdSettings",
    "EtcdStore",
    "EtcdStoreState",
    "Event",
    "EventKind",
    "KeptLease",
    "KeyValue",
    "LeaseExpiredError",
    "LeaseId",
    "LeaseState",
    "ManualClock",
    "Op",
    "PrefixedStore",
    "PutOp",
    "RangeResult",
    "SqliteSettings",
    "SqliteStore",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreState",
    "StoreUnavailableError",
    "SystemClock",
    "TxnResult",
    "WatchStream",
    "etcd_settings",
    "open_store",
    "store_url",
]


def __getattr__(name: str) -> Any:
    # The etcd backend needs the `etcd` extra (etcd3aio); the embedded SQLite
    # store must work without it, so it is imported on first use only.
    if name in ("EtcdStore", "EtcdStoreState"):
        from meshserve.store import _etcd

        return getattr(_etcd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
