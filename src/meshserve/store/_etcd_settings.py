"""Settings of the etcd store (how to reach and authenticate to etcd)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["EtcdSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EtcdSettings:
    """Where etcd is and how to talk to it.

    The root prefix is not here: wrap the store in ``PrefixedStore`` (as
    ModelMesh's ``root_prefix`` does with etcd's namespace).
    """

    endpoints: tuple[str, ...] = ("127.0.0.1:2379",)
    """``host:port`` of each member (an ``http://`` or ``https://`` scheme, as
    in ModelMesh Serving's connection JSON, is accepted and dropped; TLS is
    chosen by ``ca_cert``, not by the scheme)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    """With ``username``: authenticate, and refresh the token every
    ``token_refresh_interval`` seconds."""

    ca_cert: str | os.PathLike[str] | None = None
    """PEM file of the CA that signed etcd's certificate; setting it turns TLS on."""
    cert_key: str | os.PathLike[str] | None = None
    """PEM file of this client's private key (mutual TLS; needs ``cert_chain``)."""
    cert_chain: str | os.PathLike[str] | None = None
    """PEM file of this client's certificate chain (mutual TLS; needs ``cert_key``)."""
    override_authority: str | None = None
    """Host name to verify etcd's certificate against, when it differs from the
    endpoints (several endpoints, or IP addresses). ModelMesh's
    ``override_authority``."""

    request_timeout: float = 5.0
    """Seconds a single call may take before it fails with
    StoreUnavailableError (etcd itself gives up on a proposal after ~7 s)."""

    connect_timeout: float = 10.0
    """Seconds ``open`` keeps trying to reach etcd. gRPC shares connections
    between channels to one address, so right after etcd restarts a new
    client can inherit an old connection's reconnect backoff."""

    reconnect_backoff_initial: float = 0.1
    """Seconds before the first attempt to reconnect to an etcd that went
    away; each further attempt waits twice as long, up to
    ``reconnect_backoff_max``."""

    reconnect_backoff_max: float = 0.5
    """Longest wait between reconnect attempts. gRPC's own cap is 120 s
    (after a 30 s outage it waited 11-14 s), and an instance whose lease
    keepalives cannot reach a returned etcd for a whole lease TTL loses its
    lease and looks dead to the mesh: a cap well under the TTL (10 s) keeps
    the lease; a connection attempt to a down etcd on loopback or a LAN costs
    next to nothing."""

    token_refresh_interval: float = 240.0
    """Seconds between re-authentications; etcd's simple tokens live 5 min."""

    def __post_init__(self) -> None:
        # Accept any sequence (a list from JSON) but keep the object hashable.
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        if not self.endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if (self.cert_key is None) != (self.cert_chain is None):
            raise ValueError("cert_key and cert_chain go together")
        if self.cert_key is not None and self.ca_cert is None:
            raise ValueError("a client certificate needs ca_cert (TLS)")
        if min(self.request_timeout, self.token_refresh_interval, self.connect_timeout) <= 0:
            raise ValueError(
                "request_timeout, connect_timeout and token_refresh_interval must be positive"
            )
        if not 0 < self.reconnect_backoff_initial <= self.reconnect_backoff_max:
            raise ValueError(
                "reconnect_backoff_initial must be positive and at most reconnect_backoff_max"
            )

    @property
    def grpc_endpoints(self) -> list[str]:
        """The endpoints as ``host:port``."""
        return [e.split("://", 1)[-1].rstrip("/") for e in self.endpoints]

    @property
    def channel_options(self) -> list[tuple[str, int]]:
        """gRPC channel options: reconnect backoff bounded by the settings,
        and a subchannel pool of the channel's own (gRPC shares connections
        to one address between channels by default, so a new client could
        inherit an old connection's long backoff)."""
        return [
            ("grpc.initial_reconnect_backoff_ms", _ms(self.reconnect_backoff_initial)),
            ("grpc.max_reconnect_backoff_ms", _ms(self.reconnect_backoff_max)),
            ("grpc.use_local_subchannel_pool", 1),
        ]


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
