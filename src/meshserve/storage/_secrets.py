"""Storage keys kept in a Secret: what the puller asks of whoever holds them.

ModelMesh Serving reads its storage-config from a Secret in the model's
namespace (``storageSecretName``, ``storage-config`` by default). Here the
Secret lives sealed in the mesh's store; the storage layer does not know the
store's layout or the sealing key, so the server hands the puller a
:class:`SecretReader` that reads and unseals one Secret on demand. The
puller asks at every pull that needs storage, so a re-applied Secret is
used by the next pull, and the clear values live only as long as the pull.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["SecretEntries", "SecretReader"]


@dataclass(frozen=True, slots=True)
class SecretEntries:
    """One Secret's storage-config entries, unsealed for one pull."""

    origin: str
    """How messages name the Secret: ``secret 'team-a/storage-config'``."""
    values: Mapping[str, bytes] = field(repr=False)
    """Storage key -> its JSON, in the clear."""
    unreadable: Mapping[str, str] = field(default_factory=dict)
    """Storage key -> why it could not be unsealed (never a value). A model
    using such a key fails to load with that reason; the others still work."""


class SecretReader(Protocol):
    """Reads one Secret's entries (raising ``StorageError`` subclasses when
    the Secret cannot be read at all)."""

    async def read_secret(self, *, namespace: str, name: str) -> SecretEntries | None:
        """The Secret ``name`` in ``namespace``, unsealed; None if there is none."""
        ...
