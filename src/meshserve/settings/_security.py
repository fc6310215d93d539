"""Settings of TLS, authentication and secrets at rest."""

from __future__ import annotations

import pathlib
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from meshserve.settings._group import Group

__all__ = ["AuthSettings", "ClientAuth", "SecuritySettings", "TlsSettings"]

ClientAuth = Literal["none", "optional", "require"]


class TlsSettings(Group):
    """Where a server's (or client's) certificate, key and CA live.

    ModelMesh Serving takes these from the Secret named by ``tls.secretName``
    (keys ``tls.crt``, ``tls.key``, ``ca.crt``) and ``tls.clientAuth``; here
    they are files, so a mounted Secret works as is.
    """

    cert_file: pathlib.Path
    """PEM certificate chain, leaf first."""

    key_file: pathlib.Path
    """PEM private key of the leaf certificate (PKCS8, ``BEGIN PRIVATE KEY``;
    the traditional RSA/EC forms load too)."""

    ca_file: pathlib.Path | None = None
    """PEM CA bundle that peers' certificates must chain to. Required when
    clients are verified (``client_auth`` other than ``none``) and for mesh
    links, which are always mutual."""

    client_auth: ClientAuth = "none"
    """``require``: refuse clients without a certificate signed by the CA.
    ``optional``: verify a certificate when one is presented, serve clients
    without one. ``none``: do not ask. (ModelMesh: ``tls.clientAuth``.)
    gRPC in Python cannot ask for an optional certificate, so under
    ``optional`` the gRPC port does not request one; REST does."""

    reload_interval_s: float = Field(default=5.0, ge=0)
    """How often, at most, the files are checked for a change (one ``stat``
    per file, at a handshake). 0 checks at every handshake."""

    @model_validator(mode="after")
    def _client_auth_needs_ca(self) -> TlsSettings:
        if self.client_auth != "none" and self.ca_file is None:
            raise ValueError(f"client_auth={self.client_auth!r} needs ca_file to verify clients")
        return self

    def for_mesh_links(self) -> TlsSettings:
        """The same files with client certificates required: instance-to-
        instance links are mutual TLS whenever TLS is on."""
        if self.ca_file is None:
            raise ValueError("mesh links are mutual TLS and need ca_file")
        return self.model_copy(update={"client_auth": "require"})


class AuthSettings(Group):
    """Authentication and authorisation of the gRPC and REST front ends."""

    enabled: bool = False
    """Require a credential on every call except health probes. Off by
    default like ModelMesh, which has no application-level authentication;
    turn it on wherever the ports are reachable by more than trusted callers."""

    tokens_file: pathlib.Path | None = None
    """YAML file of principals (see ``meshserve.security._tokens``); required
    when enabled, since it also gives mTLS identities their roles."""

    mtls_identities: dict[str, str] = Field(default_factory=dict)
    """Client certificate subject CN -> principal name in the tokens file.
    Used only for certificates the TLS layer verified, and only when the
    call carries no bearer token."""

    reload_interval_s: float = Field(default=5.0, ge=0)
    """At most this often a call checks whether the tokens file changed; a
    revoked token stops working within this many seconds."""

    @model_validator(mode="after")
    def _tokens_file_when_enabled(self) -> AuthSettings:
        if self.enabled and self.tokens_file is None:
            raise ValueError("auth.enabled needs auth.tokensFile (the principals and their roles)")
        return self


class SecuritySettings(Group):
    """Secrets at rest: the key that seals Secret values in the store."""

    sealing_key_file: pathlib.Path | None = None
    """File holding the 256-bit sealing key as hex or base64 of 32 bytes;
    it must be mode 0600 or stricter. None: ``sealing_key``, else
    ``<data_dir>/sealing.key`` (``meshserve up`` makes it once). Every
    process that applies or reads Secrets of one store needs the same key."""

    sealing_key: SecretStr = SecretStr("")
    """The sealing key itself (hex or base64), usually from
    ``MESHSERVE_SECURITY__SEALING_KEY``; set this or ``sealing_key_file``,
    not both. Never logged or printed."""
