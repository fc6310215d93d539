"""The SQLite side of ``SqliteStore``: plain synchronous SQL.

Everything here runs on the store's single executor thread, never on the
event loop. Each public method is one SQLite transaction; writes use
``BEGIN IMMEDIATE`` so that processes sharing the file serialise on the write
lock instead of failing halfway through a read-modify-write.

The tables, and how their rows map to records, are in ``_sqlite_schema.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from meshserve.store import _errors
from meshserve.store._sqlite_schema import (
    EVENT_COLUMNS,
    SCHEMA,
    SCHEMA_VERSION,
    EventLog,
    KvRow,
    row_to_event,
    row_to_kv,
)
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
    prefix_range_end,
)

__all__ = ["EventPage", "SqliteDb", "TxnOutcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TxnOutcome:
    succeeded: bool
    revision: int
    deleted: tuple[int, ...]
    """Per op: keys deleted (0 for puts)."""
    expired_leases: int
    """Leases swept as a side effect (their DELETE events are in the log)."""
    dead_lease: LeaseId | None = None
    """A lease named by a put that is not alive; nothing was applied."""


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events with ``after < revision <= upto``, in order."""

    compact_revision: int
    current_revision: int
    upto: int
    events: tuple[Event, ...]


class SqliteDb:
    """One connection to the store's database file; one thread uses it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @classmethod
    def connect(cls, path: str, *, busy_timeout: float) -> SqliteDb:
        _make_private(path)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            with _translate_errors():
                conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL is durable across a process crash in WAL mode; only
                # a power loss can drop the last transactions.
                conn.execute("PRAGMA synchronous = NORMAL")
            db = cls(conn)
            db._create_schema()
        except BaseException:
            conn.close()
            raise
        return db

    def close(self) -> None:
        self._conn.close()

    def _create_schema(self) -> None:
        with self._write():
            # executescript would commit the open transaction first.
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema_version', ?)",
                (SCHEMA_VERSION,),
            )
            found = self._meta("schema_version")
        if found != SCHEMA_VERSION:
            raise _errors.StoreError(
                f"store database has schema version {found}, this code needs {SCHEMA_VERSION}"
            )

    # -- transactions ----------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with _translate_errors():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[None]:
        # A deferred transaction gives several SELECTs one snapshot.
        with _translate_errors():
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._conn.execute("COMMIT")

    def _meta(self, name: str) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, name: str, value: int) -> None:
        self._conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))

    # -- reads -----------------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        with _translate_errors():
            row = self._select_kv(key.encode())
        return None if row is None else row_to_kv(row)

    def range(self, prefix: str) -> RangeResult:
        with self._read():
            revision = self._meta("revision")
            rows = self._select_prefix(prefix.encode())
        return RangeResult(kvs=tuple(row_to_kv(r) for r in rows), revision=revision)

    def current_revision(self) -> int:
        with _translate_errors():
            return self._meta("revision")

    def _select_kv(self, key: bytes) -> KvRow | None:
        row: KvRow | None = self._conn.execute(
            "SELECT key, value, create_revision, mod_revision, version, lease FROM kv "
            "WHERE key = ?",
            (key,),
        ).fetchone()
        return row

    def _select_prefix(self, prefix: bytes) -> list[KvRow]:
        end = prefix_range_end(prefix)
        sql = "SELECT key, value, create_revision, mod_revision, version, lease FROM kv "
        if end is None:
            return self._conn.execute(sql + "WHERE key >= ? ORDER BY key", (prefix,)).fetchall()
        return self._conn.execute(
            sql + "WHERE key >= ? AND key < ? ORDER BY key", (prefix, end)
        ).fetchall()

    # -- writes ----------------------------------------------------------------

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op], *, now: float) -> TxnOutcome:
        with self._write():
            expired = self._sweep(now)
            revision = self._meta("revision")
            for compare in compares:
                row = self._select_kv(compare.key.encode())
                if (row[3] if row else 0) != compare.mod_revision:
                    return TxnOutcome(False, revision, (), expired)
            leases = {op.lease for op in ops if isinstance(op, PutOp) and op.lease is not None}
            for lease in leases:
                if not self._lease_alive(lease, now):
                    # Commit the sweep anyway; only the ops are refused.
                    return TxnOutcome(False, revision, (), expired, dead_lease=lease)
            log = EventLog(self._conn, revision=revision + 1, ts=now)
            deleted = tuple(self._apply(op, log) for op in ops)
            if log.changed:
                revision += 1
                self._set_meta("revision", revision)
        return TxnOutcome(True, revision, deleted, expired)

    def _apply(self, op: Op, log: EventLog) -> int:
        if isinstance(op, PutOp):
            key = op.key.encode()
            prev = self._select_kv(key)
            if prev is None:
                row: KvRow = (key, op.value, log.revision, log.revision, 1, op.lease)
            else:
                row = (key, op.value, prev[2], log.revision, prev[4] + 1, op.lease)
            self._conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?, ?, ?, ?)", row)
            log.record(EventKind.PUT, row, prev)
            return 0
        if isinstance(op, DeleteOp):
            found = self._select_kv(op.key.encode())
            rows = [] if found is None else [found]
        else:
            assert isinstance(op, DeletePrefixOp)
            rows = self._select_prefix(op.prefix.encode())
        self._delete_rows(rows, log)
        return len(rows)

    def _delete_rows(self, rows: Sequence[KvRow], log: EventLog) -> None:
        self._conn.executemany("DELETE FROM kv WHERE key = ?", [(r[0],) for r in rows])
        for row in rows:
            log.record(EventKind.DELETE, (row[0], b"", 0, log.revision, 0, None), row)

    # -- leases ----------------------------------------------------------------

    def grant_lease(self, ttl: float, *, now: float) -> LeaseId:
        with self._write():
            cursor = self._conn.execute(
                "INSERT INTO leases (ttl, expires_at) VALUES (?, ?)", (ttl, now + ttl)
            )
            assert cursor.lastrowid is not None
            return LeaseId(cursor.lastrowid)

    def keepalive(self, lease: LeaseId, *, now: float) -> bool:
        """Refresh ``lease``; False if it had already expired or never existed."""
        with self._write():
            self._sweep(now)
            cursor = self._conn.execute(
                "UPDATE leases SET expires_at = ? + ttl WHERE id = ?", (now, lease)
            )
            return cursor.rowcount == 1

    def revoke_lease(self, lease: LeaseId, *, now: float) -> None:
        with self._write():
            self._sweep(now)
            self._end_lease(lease, now)

    def has_expired_leases(self, now: float) -> bool:
        with _translate_errors():
            row = self._conn.execute(
                "SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1", (now,)
            ).fetchone()
        return row is not None

    def sweep(self, now: float) -> int:
        """End every expired lease; return how many."""
        with self._write():
            return self._sweep(now)

    def _lease_alive(self, lease: int, now: float) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM leases WHERE id = ? AND expires_at > ?", (lease, now)
        ).fetchone()
        return row is not None

    def _sweep(self, now: float) -> int:
        expired = [
            int(r[0])
            for r in self._conn.execute(
                "SELECT id FROM leases WHERE expires_at <= ? ORDER BY expires_at, id", (now,)
            )
        ]
        for lease in expired:
            self._end_lease(lease, now)
        return len(expired)

    def _end_lease(self, lease: int, now: float) -> None:
        # One revision per lease, and none if it held no keys (as etcd does).
        rows = self._conn.execute(
            "SELECT key, value, create_revision, mod_revision, version, lease FROM kv "
            "WHERE lease = ? ORDER BY key",
            (lease,),
        ).fetchall()
        self._conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        if rows:
            revision = self._meta("revision") + 1
            log = EventLog(self._conn, revision=revision, ts=now)
            self._delete_rows(rows, log)
            self._set_meta("revision", revision)

    # -- history ---------------------------------------------------------------

    def read_events(self, *, after: int, max_revisions: int) -> EventPage:
        """Events after revision ``after``, at most ``max_revisions`` revisions of them."""
        with self._read():
            current = self._meta("revision")
            compacted = self._meta("compact_revision")
            upto = min(current, after + max_revisions)
            rows = self._conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE revision > ? AND revision <= ? "
                "ORDER BY revision, sub",
                (after, upto),
            ).fetchall()
        return EventPage(compacted, current, upto, tuple(row_to_event(r) for r in rows))

    def replay(self, prefix: str, *, start: int, upto: int) -> EventPage:
        """Events under ``prefix`` with ``start <= revision <= upto``."""
        key = prefix.encode()
        end = prefix_range_end(key)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM events WHERE revision >= ? AND revision <= ? AND key >= ?"
        )
        args: tuple[object, ...] = (start, upto, key)
        if end is not None:
            sql += " AND key < ?"
            args += (end,)
        with self._read():
            current = self._meta("revision")
            compacted = self._meta("compact_revision")
            rows = self._conn.execute(sql + " ORDER BY revision, sub", args).fetchall()
        return EventPage(compacted, current, upto, tuple(row_to_event(r) for r in rows))

    def compact(self, revision: int) -> None:
        with self._write():
            current = self._meta("revision")
            if revision > current:
                raise ValueError(f"cannot compact future revision {revision} (now {current})")
            self._compact(revision)

    def auto_compact(self, *, keep_revisions: int, older_than: float) -> int:
        """Drop history beyond the last ``keep_revisions`` or written before ``older_than``.

        Returns the compacted revision.
        """
        with self._write():
            by_count = self._meta("revision") - keep_revisions
            row = self._conn.execute(
                "SELECT MAX(revision) FROM events WHERE ts < ?", (older_than,)
            ).fetchone()
            by_age = int(row[0]) if row and row[0] is not None else 0
            return self._compact(max(by_count, by_age))

    def _compact(self, revision: int) -> int:
        compacted = self._meta("compact_revision")
        if revision > compacted:
            self._conn.execute("DELETE FROM events WHERE revision <= ?", (revision,))
            self._set_meta("compact_revision", revision)
            compacted = revision
        return compacted


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """Report a busy or locked database as transient, everything else as is."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        message = str(exc)
        if "locked" in message or "busy" in message:
            raise _errors.StoreUnavailableError(f"store database busy: {message}") from exc
        raise


_COMPANIONS = ("", "-wal", "-shm", "-journal")
"""The database file and the files SQLite keeps beside it."""


def _make_private(path: str) -> None:
    """Create the database file 0600 if it is new, and take group and other
    access off it and its companions if it is not. SQLite creates the WAL
    and shared-memory files with the database file's mode, so a private
    database keeps them private: the store holds every resource and sealed
    Secret, and a runtime running as another user must not read it."""
    if path == ":memory:" or path.startswith("file:"):
        return
    # (No directory: sqlite3.connect says so, as it always did.)
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for suffix in _COMPANIONS:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(path + suffix).st_mode)
            if mode & 0o077:
                try:
                    os.chmod(path + suffix, mode & 0o700)
                except PermissionError:
                    # Another user's store (a break-glass --store): theirs to fix.
                    log.warning("cannot make %s private (mode %o)", path + suffix, mode)
