"""What an instance needs to reach the others (their internal ports)."""

from __future__ import annotations

from typing import Protocol

from meshserve.errors import UnavailableError
from meshserve.protocol.inference import InferenceRequest, InferenceResponse, ModelMetadata
from meshserve.protocol.routing import Metadata

__all__ = ["PeerLink", "need_peers"]


class PeerLink(Protocol):
    """Calls to other instances' internal ports (``protocol.peer.PeerClient``).
    ``timeout_s``: the call's deadline (None: the link's default);
    ``data_address``: the peer's data port, for inference ("": it has none)."""

    async def infer(
        self,
        address: str,
        body: bytes,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
        data_address: str = "",
    ) -> bytes: ...

    async def infer_decoded(
        self,
        address: str,
        request: InferenceRequest,
        metadata: Metadata,
        *,
        timeout_s: float | None = None,
        data_address: str = "",
    ) -> InferenceResponse: ...

    async def model_metadata(
        self, address: str, model_id: str, metadata: Metadata, *, timeout_s: float | None = None
    ) -> ModelMetadata: ...

    async def live(self, address: str, *, timeout_s: float) -> None:
        """Return if the peer answers within ``timeout_s``; raise if not."""

    async def ensure_loaded(
        self, address: str, model_id: str, metadata: Metadata, *, sync: bool, last_used_ms: int
    ) -> None: ...


def need_peers(peers: PeerLink | None) -> PeerLink:
    """``peers``, or UnavailableError for an instance that has none (tests, a lone instance)."""
    if peers is None:
        raise UnavailableError("this instance has no link to other instances")
    return peers
