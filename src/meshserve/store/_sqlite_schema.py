"""The store's SQLite tables, and how their rows map to the store's records.

- ``kv``: the current keys (key as UTF-8 BLOB, so order and prefix ranges
  are byte-wise, as in etcd);
- ``events``: one row per change (kv after, kv before) keyed by
  (revision, sub), read by watches and trimmed by compaction;
- ``leases``: id, TTL and wall-clock expiry (wall clock because every
  process on the machine must agree on it, and it survives restarts);
- ``meta``: the current revision, the compacted revision, the schema version.
"""

from __future__ import annotations

import sqlite3

from meshserve.store._types import Event, EventKind, KeyValue, LeaseId

__all__ = [
    "EVENT_COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "EventLog",
    "KvRow",
    "row_to_event",
    "row_to_kv",
]

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
    key             BLOB PRIMARY KEY,
    value           BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision    INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    lease           INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    revision             INTEGER NOT NULL,
    sub                  INTEGER NOT NULL,
    kind                 INTEGER NOT NULL,
    key                  BLOB NOT NULL,
    value                BLOB NOT NULL,
    create_revision      INTEGER NOT NULL,
    version              INTEGER NOT NULL,
    lease                INTEGER,
    prev_value           BLOB,
    prev_create_revision INTEGER,
    prev_mod_revision    INTEGER,
    prev_version         INTEGER,
    prev_lease           INTEGER,
    ts                   REAL NOT NULL,
    PRIMARY KEY (revision, sub)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl        REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compact_revision', 0);
"""

KIND_CODE = {EventKind.PUT: 0, EventKind.DELETE: 1}
_KIND_OF_CODE = {code: kind for kind, code in KIND_CODE.items()}

EVENT_COLUMNS = (
    "revision, kind, key, value, create_revision, version, lease, prev_value, "
    "prev_create_revision, prev_mod_revision, prev_version, prev_lease"
)

KvRow = tuple[bytes, bytes, int, int, int, int | None]


class EventLog:
    """Appends the events of one revision."""

    def __init__(self, conn: sqlite3.Connection, *, revision: int, ts: float) -> None:
        self._conn = conn
        self.revision = revision
        self._ts = ts
        self._sub = 0

    @property
    def changed(self) -> bool:
        return self._sub > 0

    def record(self, kind: EventKind, row: KvRow, prev: KvRow | None) -> None:
        key, value, create_revision, _, version, lease = row
        prev_columns = (None,) * 5 if prev is None else prev[1:]
        self._conn.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.revision,
                self._sub,
                KIND_CODE[kind],
                key,
                value,
                create_revision,
                version,
                lease,
                *prev_columns,
                self._ts,
            ),
        )
        self._sub += 1


def row_to_kv(row: KvRow) -> KeyValue:
    key, value, create_revision, mod_revision, version, lease = row
    return KeyValue(
        key=key.decode(),
        value=bytes(value),
        create_revision=create_revision,
        mod_revision=mod_revision,
        version=version,
        lease=None if lease is None else LeaseId(lease),
    )


def row_to_event(row: tuple[object, ...]) -> Event:
    (
        revision,
        kind,
        key,
        value,
        create_revision,
        version,
        lease,
        prev_value,
        prev_create,
        prev_mod,
        prev_version,
        prev_lease,
    ) = row
    assert isinstance(key, bytes) and isinstance(value, bytes)
    assert isinstance(revision, int) and isinstance(kind, int)
    assert isinstance(create_revision, int) and isinstance(version, int)
    assert lease is None or isinstance(lease, int)
    kv = row_to_kv((key, value, create_revision, revision, version, lease))
    prev = None
    if prev_mod is not None:
        assert isinstance(prev_value, bytes) and isinstance(prev_create, int)
        assert isinstance(prev_mod, int) and isinstance(prev_version, int)
        assert prev_lease is None or isinstance(prev_lease, int)
        prev = row_to_kv((key, prev_value, prev_create, prev_mod, prev_version, prev_lease))
    return Event(kind=_KIND_OF_CODE[kind], kv=kv, prev=prev)
