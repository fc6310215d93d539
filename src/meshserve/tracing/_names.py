"""Span names and attribute keys, named once.

Keys follow OpenTelemetry's semantic conventions where one exists
(``rpc.*``, ``http.*``, ``server.*``); the mesh's own are ``meshserve.*``.
"""

from __future__ import annotations

__all__ = [
    "FORWARD",
    "HOPS",
    "HTTP_METHOD",
    "HTTP_ROUTE",
    "INFER",
    "INSTANCE_ID",
    "LOAD",
    "MODEL_ID",
    "PEER_INSTANCE_ID",
    "PULL",
    "ROUTE",
    "RPC_METHOD",
    "RPC_SERVICE",
    "RPC_SYSTEM",
    "RUNTIME_INFER",
    "SERVER_ADDRESS",
    "VMODEL_ID",
]

# -- span names ---------------------------------------------------------------

ROUTE = "meshserve.route"
"""Which instance serves a request: here, a copy elsewhere, or placement."""
FORWARD = "meshserve.forward"
"""One attempt to have a peer serve it, over the peer's internal port."""
LOAD = "meshserve.load"
"""Waiting for this instance's copy to load (pull, size, make room, load)."""
PULL = "meshserve.pull"
"""Fetching the artifact from storage (or the artifact cache)."""
INFER = "meshserve.infer"
"""The runtime's inference on this instance's copy."""
RUNTIME_INFER = "meshserve.runtime.infer"
"""The same inference inside a runtime process (over the data link)."""

# -- attributes: semantic conventions -----------------------------------------

RPC_SYSTEM = "rpc.system"
RPC_SERVICE = "rpc.service"
RPC_METHOD = "rpc.method"
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
SERVER_ADDRESS = "server.address"

# -- attributes: meshserve's own ----------------------------------------------

MODEL_ID = "meshserve.model_id"
VMODEL_ID = "meshserve.vmodel_id"
"""The vmodel the request named (absent when it named a model)."""
INSTANCE_ID = "meshserve.instance_id"
"""The instance that recorded the span."""
PEER_INSTANCE_ID = "meshserve.peer.instance_id"
"""The instance a request is forwarded to."""
HOPS = "meshserve.hops"
"""How many instances forwarded the request before this one."""
