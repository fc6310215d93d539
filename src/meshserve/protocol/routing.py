"""ModelMesh's routing headers and the server identity, as the wire has them.

A request names its model with ``model_name``, or with the ``mm-model-id`` /
``mm-vmodel-id`` headers (``-bin`` forms carry UTF-8 that gRPC decodes for
us and HTTP sends as base64).

Namespaces: ModelMesh Serving gives each namespace a mesh of its own, so a
client names a model by its plain resource name. meshserve serves every
namespace from one mesh, where a resource outside ``default`` has the ids
``<namespace>/<name>`` (:func:`namespaced_id`). A request selects a
namespace with the ``mm-namespace`` header (REST also by the path prefix
``/namespaces/<ns>``; with authentication on, a principal limited to one
namespace selects it by default), and :func:`in_namespace` turns the plain
names it gives into those ids at the edge, before anything resolves them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from meshserve.errors import InvalidRequestError, quote_client_value

__all__ = [
    "HEADER_FIELDS",
    "HOP_HEADERS",
    "NAMESPACE_HEADER",
    "NO_HEADERS",
    "REST_NAMESPACE_PREFIX",
    "Metadata",
    "RoutingHeaders",
    "ServerInfo",
    "hop_metadata",
    "in_namespace",
    "namespace_name",
    "namespaced_id",
    "rest_model_path",
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

NAMESPACE_HEADER = "mm-namespace"
"""Selects the namespace a request's plain model names are in."""

DEFAULT_NAMESPACE = "default"
"""The namespace whose ids carry no prefix."""

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A Kubernetes namespace name (an RFC 1123 label)."""

HOP_HEADERS = ("mm-hops", "mm-exclude", "mm-dest")
"""Set by an instance that forwards a request; honoured only on the internal
port (a client could otherwise steer routing)."""


@dataclass(frozen=True, slots=True)
class RoutingHeaders:
    """ModelMesh's routing headers as received, decoded to text."""

    model_id: str | None = None
    vmodel_id: str | None = None
    namespace: str | None = None
    """The namespace the request selected (``mm-namespace``); None: none."""
    hops: int = 0
    """Instances the request has passed through already."""
    exclude: tuple[str, ...] = ()
    """Instances that must not be tried again for this request."""
    dest: str | None = None
    """Set when the sender chose this instance to load and serve the model."""
    timeout_s: float | None = None
    """Seconds the caller's deadline left when the call arrived (the gRPC
    deadline; a forwarded call carries its hop deadline); None: no deadline."""

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
    namespace: str | None = None
    for key, value in metadata or ():
        field = HEADER_FIELDS.get(key)
        if field is not None:
            found[field] = _text(key, value)
        elif internal and key in HOP_HEADERS:
            hops[key] = _text(key, value)
        elif key == NAMESPACE_HEADER and not internal:
            # The internal port gets resolved ids only.
            namespace = namespace_name(_text(key, value)) if value else None
    if not found and not hops and namespace is None:
        return NO_HEADERS
    return RoutingHeaders(
        model_id=found.get("model_id"),
        vmodel_id=found.get("vmodel_id"),
        namespace=namespace,
        hops=int(hops["mm-hops"]) if hops.get("mm-hops", "").isdigit() else 0,
        exclude=tuple(x for x in hops.get("mm-exclude", "").split(",") if x),
        dest=hops.get("mm-dest") or None,
    )


def namespace_name(value: str) -> str:
    """``value`` if it is a namespace name; InvalidRequestError if not."""
    if _NAMESPACE.fullmatch(value) is None:
        raise InvalidRequestError(
            f"namespace {quote_client_value(value)} is not a namespace name "
            "(lowercase letters, digits and '-', at most 63)"
        )
    return value


def namespaced_id(namespace: str, name: str) -> str:
    """The mesh id of ``name`` in ``namespace``: ``<namespace>/<name>``,
    or ``name`` itself in the default namespace."""
    return name if namespace in ("", DEFAULT_NAMESPACE) else f"{namespace}/{name}"


REST_NAMESPACE_PREFIX = "/namespaces/{namespace}"
"""The REST front serves every route again under this prefix, for the
models of that namespace by plain name."""


def rest_model_path(namespace: str, name: str) -> str:
    """The REST path of the model ``name`` (plain) in ``namespace``: the path
    a client of that namespace uses verbatim (no header needed)."""
    if namespace in ("", DEFAULT_NAMESPACE):
        return f"/v2/models/{name}"
    return f"{REST_NAMESPACE_PREFIX.format(namespace=namespace)}/v2/models/{name}"


def in_namespace(
    name: str, headers: RoutingHeaders, *, default: str | None = None
) -> tuple[str, RoutingHeaders]:
    """``name`` and ``headers`` with their plain names made ids of the
    request's namespace: the one the headers select, else ``default`` (the
    caller's own, when it has exactly one), else none (names used as given).

    A plain name has no ``/``; a name with one is a mesh id already (how
    clients named namespaced models before namespaces could be selected),
    and is left as it is. Authorisation checks the id resolved from these,
    so a selected namespace widens no one's access.
    """
    namespace = headers.namespace or default
    if namespace is None:
        return name, headers

    def scoped(value: str | None) -> str | None:
        if not value or "/" in value:
            return value
        return namespaced_id(namespace, value)

    return scoped(name) or "", replace(
        headers, model_id=scoped(headers.model_id), vmodel_id=scoped(headers.vmodel_id)
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
