"""Security building blocks: TLS that reloads from disk, dropping root, and
who may call what.

- :func:`grpc_server_credentials`, :func:`rest_ssl_context`: server-side TLS
  for the gRPC and REST front ends; each new connection gets the certificate
  currently on disk.
- :func:`grpc_channel_credentials`, :func:`mesh_client_ssl_context`: mutual TLS
  for links between instances (gRPC, the data port).
- :func:`drop_privileges`: become an unprivileged user for good (used by the
  out-of-process runtime when started as root); :func:`root_warning`.
- :class:`Authenticator`, :func:`authorize`: principals from a tokens file
  (bearer tokens, mTLS identities) with admin / editor / viewer roles scoped
  to namespaces and models; :func:`check_inference` for the model a request
  resolved to, :func:`check_action` for a namespace a request's payload
  names. The framework adapters live in ``meshserve.server``.
- :class:`MeshSecret`: what instances of one mesh prove to each other on
  the internal port (``mesh.secretFile``, or one kept in the store).
- :class:`RateLimiter`: a token bucket per caller (``limits.requestsPerSecond``).
- :class:`SealingKey`, :func:`load_sealing_key`: AES-256-GCM sealing of
  Secret values before they reach the store, bound to the Secret's
  namespace, name and key (:class:`SealContext`).
"""

from meshserve.security._auth import (
    DEFAULT_NAMESPACE,
    Action,
    Authenticator,
    AuthSettings,
    DenialKind,
    DeniedHook,
    NamespaceOf,
    PrincipalSource,
    acting_as,
    authorize,
    caller_namespace,
    check_action,
    check_inference,
    current_principal,
    may_infer,
    may_see,
    may_see_model,
    may_see_namespace,
    namespace_of,
    parse_bearer,
    token_sha256,
)
from meshserve.security._environment import runtime_environment
from meshserve.security._mesh_secret import (
    MESH_SECRET_FILE,
    MeshSecret,
    MeshSecretError,
    new_mesh_secret_text,
)
from meshserve.security._privileges import (
    RUN_AS_USER_ADVICE,
    PrivilegeDropError,
    capabilities,
    drop_privileges,
    resolve_user,
    root_warning,
    unreadable_after_drop,
)
from meshserve.security._ratelimit import RateLimiter, TokenBucket, rate_limiter
from meshserve.security._sealing import (
    SEALING_KEY_FILE,
    SealContext,
    SealingKey,
    SealingKeyError,
    SecuritySettings,
    UnsealError,
    load_sealing_key,
    sealed_size,
)
from meshserve.security._tls import (
    ClientAuth,
    TlsSettings,
    certificate_date_problem,
    grpc_channel_credentials,
    grpc_server_credentials,
    mesh_client_ssl_context,
    rest_ssl_context,
)
from meshserve.security._tokens import (
    Principal,
    PrincipalTable,
    Role,
    TokensFile,
    TokensFileError,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "MESH_SECRET_FILE",
    "RUN_AS_USER_ADVICE",
    "SEALING_KEY_FILE",
    "Action",
    "AuthSettings",
    "Authenticator",
    "ClientAuth",
    "DenialKind",
    "DeniedHook",
    "MeshSecret",
    "MeshSecretError",
    "NamespaceOf",
    "Principal",
    "PrincipalSource",
    "PrincipalTable",
    "PrivilegeDropError",
    "RateLimiter",
    "Role",
    "SealContext",
    "SealingKey",
    "SealingKeyError",
    "SecuritySettings",
    "TlsSettings",
    "TokenBucket",
    "TokensFile",
    "TokensFileError",
    "UnsealError",
    "acting_as",
    "authorize",
    "caller_namespace",
    "capabilities",
    "certificate_date_problem",
    "check_action",
    "check_inference",
    "current_principal",
    "drop_privileges",
    "grpc_channel_credentials",
    "grpc_server_credentials",
    "load_sealing_key",
    "may_infer",
    "may_see",
    "may_see_model",
    "may_see_namespace",
    "mesh_client_ssl_context",
    "namespace_of",
    "new_mesh_secret_text",
    "parse_bearer",
    "rate_limiter",
    "resolve_user",
    "rest_ssl_context",
    "root_warning",
    "runtime_environment",
    "sealed_size",
    "token_sha256",
    "unreadable_after_drop",
]
