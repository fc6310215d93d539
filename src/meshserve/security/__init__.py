"""Security building blocks: TLS that reloads from disk, and dropping root.

- :func:`grpc_server_credentials`, :func:`rest_ssl_context`: server-side TLS
  for the gRPC and REST front ends; each new connection gets the certificate
  currently on disk.
- :func:`grpc_channel_credentials`: mutual TLS for links between instances.
- :func:`drop_privileges`: become an unprivileged user for good (used by the
  out-of-process runtime when started as root); :func:`root_warning`.
"""

from meshserve.security._privileges import (
    PrivilegeDropError,
    capabilities,
    drop_privileges,
    resolve_user,
    root_warning,
)
from meshserve.security._tls import (
    ClientAuth,
    TlsSettings,
    grpc_channel_credentials,
    grpc_server_credentials,
    rest_ssl_context,
)

__all__ = [
    "ClientAuth",
    "PrivilegeDropError",
    "TlsSettings",
    "capabilities",
    "drop_privileges",
    "grpc_channel_credentials",
    "grpc_server_credentials",
    "resolve_user",
    "rest_ssl_context",
    "root_warning",
]
