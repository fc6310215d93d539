"""ModelMesh's routing headers and the server identity, as the wire has them.

A request names its model with ``model_name``, or with the ``mm-model-id`` /
``mm-vmodel-id`` headers (``-bin`` forms carry UTF-8 that gRPC decodes for
us and HTTP sends as base64).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HEADER_FIELDS", "RoutingHeaders", "ServerInfo", "routing_headers_from_grpc"]

HEADER_FIELDS = {
    "mm-model-id": "model_id",
    "mm-vmodel-id": "vmodel_id",
    "mm-model-id-bin": "model_id",
    "mm-vmodel-id-bin": "vmodel_id",
}
"""Header name -> the RoutingHeaders field it sets."""


@dataclass(frozen=True, slots=True)
class RoutingHeaders:
    """ModelMesh's routing headers as received, decoded to text."""

    model_id: str | None = None
    vmodel_id: str | None = None

    @property
    def given(self) -> bool:
        return self.model_id is not None or self.vmodel_id is not None


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str
    extensions: tuple[str, ...] = ()


NO_HEADERS = RoutingHeaders()


def routing_headers_from_grpc(metadata: Iterable[tuple[str, str | bytes]] | None) -> RoutingHeaders:
    """The routing headers in gRPC invocation metadata."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        field = HEADER_FIELDS.get(key)
        if field is not None:
            found[field] = value.decode() if isinstance(value, bytes) else value
    return RoutingHeaders(**found) if found else NO_HEADERS
