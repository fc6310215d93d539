"""ModelMesh's routing headers and the server identity, as the wire has them.

A request names its model with ``model_name``, or with the ``mm-model-id`` /
``mm-vmodel-id`` headers (``-bin`` forms carry UTF-8 that gRPC decodes for
us and HTTP sends as base64).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from meshserve.errors import InvalidRequestError

__all__ = [
    "HEADER_FIELDS",
    "HOP_HEADERS",
    "NO_HEADERS",
    "Metadata",
    "RoutingHeaders",
    "ServerInfo",
    "hop_metadata",
    "routing_headers_from_grpc",
    "with_named_vmodel",
]

HEADER_FIELDS = {
    "mm-model-id": "model_id",
    "mm-vmodel-id": "vmodel_id",
    "mm-model-id-bin": "model_id",
    "mm-vmodel-id-bin": "vmodel_id",
}
"""Header name -> the RoutingHeaders field it sets."""

HOP_HEADERS = ("mm-hops", "mm-exclude", "mm-dest")
"""Set by an instance that forwards a request; honoured only on the internal
port (a client could otherwise steer routing)."""


@dataclass(frozen=True, slots=True)
class RoutingHeaders:
    """ModelMesh's routing headers as received, decoded to text."""

    model_id: str | None = None
    vmodel_id: str | None = None
    hops: int = 0
    """Instances the request has passed through already."""
    exclude: tuple[str, ...] = ()
    """Instances that must not be tried again for this request."""
    dest: str | None = None
    """Set when the sender chose this instance to load and serve the model."""

    @property
    def given(self) -> bool:
        return self.model_id is not None or self.vmodel_id is not None


@dataclass(frozen=True, slots=True)
class ServerInfo:
    name: str
    version: str
    extensions: tuple[str, ...] = ()


NO_HEADERS = RoutingHeaders()

Metadata = Sequence[tuple[str, str | bytes]]
"""gRPC call metadata as meshserve sends it (``-bin`` keys carry bytes)."""


def routing_headers_from_grpc(
    metadata: Iterable[tuple[str, str | bytes]] | None, *, internal: bool = False
) -> RoutingHeaders:
    """The routing headers in gRPC invocation metadata (with the hop headers
    too when the call came in on the internal port).

    Raises InvalidRequestError for a ``-bin`` value that is not UTF-8 (REST
    refuses the same header with a 400).
    """
    found: dict[str, str] = {}
    hops: dict[str, str] = {}
    for key, value in metadata or ():
        field = HEADER_FIELDS.get(key)
        if field is not None:
            found[field] = _text(key, value)
        elif internal and key in HOP_HEADERS:
            hops[key] = _text(key, value)
    if not found and not hops:
        return NO_HEADERS
    return RoutingHeaders(
        model_id=found.get("model_id"),
        vmodel_id=found.get("vmodel_id"),
        hops=int(hops["mm-hops"]) if hops.get("mm-hops", "").isdigit() else 0,
        exclude=tuple(x for x in hops.get("mm-exclude", "").split(",") if x),
        dest=hops.get("mm-dest") or None,
    )


def _text(key: str, value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidRequestError(f"routing header {key} is not UTF-8: {exc}") from None


def with_named_vmodel(headers: RoutingHeaders, *, name: str, model_id: str) -> RoutingHeaders:
    """``headers``, with the vmodel the request named when it named one by
    ``name`` (a name resolved to another id is a vmodel's): per-model metrics
    and the access log report it."""
    if headers.given or not name or name == model_id:
        return headers
    return replace(headers, vmodel_id=name)


def hop_metadata(
    *,
    model_id: str,
    hops: int,
    exclude: Iterable[str],
    dest: str | None,
    vmodel_id: str | None = None,
) -> tuple[tuple[str, str | bytes], ...]:
    """Metadata of a request one instance forwards to another: the concrete
    model id (so the receiver resolves nothing), the vmodel the client named
    (for the receiver's metrics and access log) and the hop state."""
    metadata: list[tuple[str, str | bytes]] = [
        ("mm-model-id-bin", model_id.encode()),
        ("mm-hops", str(hops)),
        ("mm-exclude", ",".join(exclude)),
    ]
    if vmodel_id:
        metadata.append(("mm-vmodel-id-bin", vmodel_id.encode()))
    if dest is not None:
        metadata.append(("mm-dest", dest))
    return tuple(metadata)
