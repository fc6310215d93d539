"""Errors raised by the coordination store.

They extend the domain tree in ``meshserve.errors``::

    MeshServeError
    ├── StoreError                  a store call cannot succeed as asked
    │   ├── LeaseExpiredError       the lease is gone (expired, revoked, unknown)
    │   ├── CompactedError          watch history before a revision was dropped
    │   └── StoreClosedError        the store object was closed
    └── UnavailableError
        └── StoreUnavailableError   transient: locked, unreachable; retry later

Only ``StoreUnavailableError`` is retryable as-is; the others tell the caller
to do something different (grant a new lease, re-list, reopen).
"""

from __future__ import annotations

from meshserve import errors

__all__ = [
    "CompactedError",
    "LeaseExpiredError",
    "StoreClosedError",
    "StoreError",
    "StoreUnavailableError",
]


class StoreError(errors.MeshServeError):
    """A store call that retrying unchanged will not fix."""


class LeaseExpiredError(StoreError):
    """The lease no longer exists: it expired, was revoked, or never existed.

    etcd cannot tell these apart either ("requested lease not found"), so one
    type covers all three. Grant a new lease and re-register.
    """

    lease: int = 0

    def __init__(self, lease: int) -> None:
        super().__init__(f"lease {lease:#x} has expired or does not exist")
        self.lease = lease


class CompactedError(StoreError):
    """The history a watch asked for was compacted away.

    The caller must re-list (``Store.range``) and watch again from
    ``RangeResult.revision + 1``.
    """

    requested_revision: int = 0
    compact_revision: int = 0

    def __init__(self, *, requested_revision: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested_revision} is compacted (history kept after "
            f"revision {compact_revision}); re-list and watch again"
        )
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision


class StoreClosedError(StoreError):
    """The store was closed; its watches end with this error."""


class StoreUnavailableError(errors.UnavailableError):
    """The backend cannot answer now (database locked, endpoint unreachable)."""
