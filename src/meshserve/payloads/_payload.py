"""What a payload processor sees: one request or response of one inference."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Payload", "PayloadKind"]


class PayloadKind(enum.Enum):
    REQUEST = "request"
    RESPONSE = "response"


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload:
    """A request or a response, as ModelMesh's ``Payload``: the two of one
    inference share their ``id``."""

    kind: PayloadKind
    id: str
    """Unique per inference (the request and its response share it)."""
    model_id: str
    vmodel_id: str | None
    """The vmodel the request named, if it named one."""
    method: str
    """The RPC, e.g. ``inference.GRPCInferenceService/ModelInfer``."""
    data: bytes | Callable[[], bytes]
    """The serialized v2 ``ModelInferRequest`` / ``ModelInferResponse`` (empty
    for a failed request's response); a callable for one that came decoded
    (REST), serialized only when a processor reads it, off the request path."""
    status: str = ""
    """The response's gRPC status name (``OK``, ``NOT_FOUND``...); empty for
    a request."""

    def body(self) -> bytes:
        """The serialized message."""
        return self.data if isinstance(self.data, bytes) else self.data()
