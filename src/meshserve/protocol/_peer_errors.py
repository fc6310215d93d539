"""What a call to another instance raises for the status it ended with,
whichever link carried it (gRPC's internal port or the data port)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from meshserve.errors import MeshServeError, PeerTimeoutError, PeerUnreachableError
from meshserve.protocol.status import ERROR_TYPE_KEY, error_from_rpc

__all__ = ["peer_error", "refused_secret"]

# Codes a peer that is gone or stuck produces on its own, without having
# decided anything about the request.
_TRANSPORT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def peer_error(
    address: str,
    code: grpc.StatusCode,
    details: str | None,
    trailers: Sequence[tuple[str, str | bytes]],
) -> MeshServeError:
    """The error a call to the peer at ``address`` raises for the status it
    ended with (over gRPC, or the data port's REPLY that carries the same)."""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        # Only the mesh secret is checked there: the client's credential was
        # accepted on the way in, so this is the mesh's configuration.
        return refused_secret(address)
    from_meshserve = any(key == ERROR_TYPE_KEY for key, _ in trailers)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED and not from_meshserve:
        return PeerTimeoutError(f"instance at {address} did not answer in time")
    if code in _TRANSPORT_CODES and not from_meshserve:
        return PeerUnreachableError(
            f"instance at {address} did not answer ({code.name}: {details})"
        )
    return error_from_rpc(code, details, trailers)


def refused_secret(address: str) -> PeerUnreachableError:
    """The peer at ``address`` refused this instance's mesh token."""
    return PeerUnreachableError(
        f"instance at {address} refused this instance's mesh secret (every instance "
        "of a mesh needs the same mesh.secretFile, or none to share the store's)"
    )
