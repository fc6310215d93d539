"""Routing inputs and server identity, as the front ends pass them in."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RoutingHeaders", "ServerInfo"]


@dataclass(frozen=True, slots=True)
class RoutingHeaders:
    """ModelMesh's routing headers as received (``mm-model-id``,
    ``mm-vmodel-id``, or their ``-bin`` forms, already decoded to text)."""

    model_id: str | None = None
    vmodel_id: str | None = None


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str
    extensions: tuple[str, ...] = ()
