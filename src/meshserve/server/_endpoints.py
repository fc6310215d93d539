"""Where an instance answers, as written to ``<data-dir>/endpoints.json``
(read by ``up``'s supervisor and by the CLI)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Endpoints"]


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where an instance answers; written to ``<data-dir>/endpoints.json``."""

    instance_id: str
    grpc: str
    rest: str | None
    internal: str = ""
    """The internal port other instances forward to (it serves only them:
    see ``server._internal_port``)."""
    data: str = ""
    """The data port other instances forward inference to ("": none, see
    ``server._data_port``)."""
    own_grpc: str = ""
    """When ``grpc`` is shared with other instances: a public gRPC address
    of this instance alone (same services, same checks)."""
    metrics: str | None = None
    namespaces: Mapping[str, str] = field(default_factory=dict)
    """The ports of ``server.namespacePorts``: namespace -> ``host:port``."""
    pid: int = field(default_factory=os.getpid)

    def entry(self) -> dict[str, Any]:
        return {
            "id": self.instance_id,
            "grpc": self.own_grpc or self.grpc,
            "internal": self.internal,
            "data": self.data,
            "rest": self.rest,
            "metrics": self.metrics,
            "pid": self.pid,
        }

    store: str = ""
    """The store's URL, for the CLI and for children that must share it."""

    def to_json(self) -> dict[str, Any]:
        return {
            "grpc": self.grpc,
            "rest": self.rest,
            "pid": self.pid,
            "store": self.store,
            "namespaces": dict(self.namespaces),
            "instances": [self.entry()],
        }
