"""Who is calling (authentication) and whether they may (authorisation).

Framework-free: the gRPC interceptor and the REST middleware in
``meshserve.server`` read the credential off the wire and call
:meth:`Authenticator.authenticate` and :func:`authorize`; the errors they
raise become UNAUTHENTICATED / 401 and PERMISSION_DENIED / 403 in
``meshserve.protocol.status``.

Roles nest: a viewer may ``read`` (status, metadata, listings) and ``infer``;
an editor also ``write`` (register, unregister, vmodels, ensureLoaded); an
admin may do everything, ``admin`` actions (configuration) included. A
principal's namespaces and models narrow every model-scoped action: a call
naming a model outside them is denied whatever the role.

A model's namespace is what the caller derives from its id; the default,
:func:`namespace_of`, reads ``<namespace>/<name>`` and puts every other id
in ``default``.

The edge checks what the request names. After a vmodel resolves to a
concrete model, the code that resolved it calls :func:`check_inference`,
which finds the caller through a context variable the edge set for the
call (:func:`acting_as`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fnmatch
import hashlib
import hmac
import time
from collections.abc import Callable, Iterator
from typing import Literal, Protocol

from meshserve.errors import PermissionDeniedError, UnauthenticatedError
from meshserve.security._tokens import Principal, PrincipalTable, Role, TokensFile
from meshserve.settings import AuthSettings

__all__ = [
    "DEFAULT_NAMESPACE",
    "Action",
    "AuthSettings",
    "Authenticator",
    "DenialKind",
    "DeniedHook",
    "NamespaceOf",
    "PrincipalSource",
    "acting_as",
    "authorize",
    "caller_namespace",
    "check_action",
    "check_inference",
    "current_principal",
    "may_see",
    "may_see_namespace",
    "namespace_of",
    "parse_bearer",
    "token_sha256",
]

Action = Literal["infer", "read", "write", "admin"]
DenialKind = Literal["unauthenticated", "forbidden"]
NamespaceOf = Callable[[str], str]

DEFAULT_NAMESPACE = "default"

_ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    "viewer": frozenset({"read", "infer"}),
    "editor": frozenset({"read", "infer", "write"}),
    "admin": frozenset({"read", "infer", "write", "admin"}),
}


class DeniedHook(Protocol):
    """Told about every refused call (to count it in metrics). ``method`` is
    a low-cardinality name: the full gRPC method, or ``GET /v2/models/{name}``."""

    def __call__(self, kind: DenialKind, method: str) -> None: ...


class PrincipalSource(Protocol):
    """Where the principals come from (a :class:`TokensFile`, or a test's table)."""

    def current(self) -> PrincipalTable: ...


def token_sha256(token: str) -> str:
    """The hex digest a tokens file stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_bearer(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` value (None when the
    header is absent). Raises UnauthenticatedError for another scheme or an
    empty token; the message never repeats the value."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise UnauthenticatedError("the authorization header must be 'Bearer <token>'")
    token = token.strip()
    if not token:
        raise UnauthenticatedError("the bearer token is empty")
    return token


class Authenticator:
    """Finds the principal behind a bearer token or a verified client certificate."""

    def __init__(
        self, *, principals: PrincipalSource, mtls_identities: dict[str, str] | None = None
    ) -> None:
        self._principals = principals
        self._mtls_identities = dict(mtls_identities or {})

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> Authenticator:
        """Read the tokens file now; raises TokensFileError (a ValueError) if
        it is missing or invalid, or ValueError if auth is not enabled."""
        if not settings.enabled or settings.tokens_file is None:
            raise ValueError("authentication is not enabled; install no auth layer")
        tokens = TokensFile.open(
            settings.tokens_file, reload_interval_s=settings.reload_interval_s, clock=clock
        )
        return cls(principals=tokens, mtls_identities=settings.mtls_identities)

    def authenticate(self, *, bearer: str | None, peer_cn: str | None) -> Principal:
        """The caller. A bearer token, when given, decides (a wrong one is not
        rescued by a certificate); otherwise the verified certificate's CN.
        Raises UnauthenticatedError when neither identifies a principal."""
        table = self._principals.current()
        if bearer is not None:
            principal = _match_token(table, bearer)
            if principal is None:
                raise UnauthenticatedError("the bearer token matches no principal")
            return principal
        if peer_cn is not None:
            name = self._mtls_identities.get(peer_cn)
            principal = table.by_name.get(name) if name is not None else None
            if principal is None:
                raise UnauthenticatedError(
                    f"client certificate CN '{peer_cn}' is not mapped to a principal"
                )
            return principal
        raise UnauthenticatedError(
            "a credential is required: 'authorization: Bearer <token>' or a client certificate"
        )


def _match_token(table: PrincipalTable, bearer: str) -> Principal | None:
    digest = hashlib.sha256(bearer.encode()).digest()
    found: Principal | None = None
    # Every entry is compared, in constant time, whether or not one matched
    # already: how long this takes says nothing about which digest is close.
    for stored, principal in table.tokens:
        if hmac.compare_digest(stored, digest) and found is None:
            found = principal
    return found


def namespace_of(model_id: str) -> str:
    """``team-a/fraud`` is in ``team-a``; an id without a ``/`` prefix is in
    ``default``."""
    namespace, slash, name = model_id.partition("/")
    return namespace if slash and namespace and name else DEFAULT_NAMESPACE


def _covers(globs: tuple[str, ...], value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, glob) for glob in globs)


def authorize(
    principal: Principal, *, action: Action, namespace: str | None, model_id: str | None
) -> None:
    """Raise PermissionDeniedError unless ``principal`` may do ``action``.

    ``namespace`` None is a call scoped to no namespace (a listing): only the
    role is checked, and the caller filters what it returns with
    :func:`may_see`. ``model_id`` None checks no model scope.
    """
    if action not in _ROLE_ACTIONS[principal.role]:
        raise PermissionDeniedError(
            f"principal '{principal.name}' (role {principal.role}) may not {action}"
        )
    if namespace is not None and not _covers(principal.namespaces, namespace):
        raise PermissionDeniedError(
            f"principal '{principal.name}' has no access to namespace '{namespace}'"
        )
    models = principal.models
    if model_id is not None and models is not None and not _covers(models, model_id):
        raise PermissionDeniedError(
            f"principal '{principal.name}' has no access to model '{model_id}'"
        )


def may_see(principal: Principal, model_id: str, *, namespace: str) -> bool:
    """Whether a listing shown to ``principal`` may include ``model_id``."""
    return _covers(principal.namespaces, namespace) and (
        principal.models is None or _covers(principal.models, model_id)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Call:
    principal: Principal
    method: str
    on_denied: DeniedHook | None
    namespace_of: NamespaceOf


_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "meshserve_auth_call", default=None
)


@contextlib.contextmanager
def acting_as(
    principal: Principal,
    *,
    method: str,
    on_denied: DeniedHook | None = None,
    namespace_of: NamespaceOf = namespace_of,
) -> Iterator[None]:
    """Make ``principal`` the caller of the code run inside, for
    :func:`check_inference` and :func:`current_principal`.

    The edge enters it around the handler call itself, so the handler, and
    whatever it awaits, runs in the same context; tasks it creates copy the
    context and see the caller too.
    """
    token = _CALL.set(
        _Call(principal=principal, method=method, on_denied=on_denied, namespace_of=namespace_of)
    )
    try:
        yield
    finally:
        _CALL.reset(token)


def current_principal() -> Principal | None:
    """The caller the edge authenticated, or None when no auth layer ran
    (auth disabled, or the internal port, whose callers are instances)."""
    call = _CALL.get()
    return call.principal if call is not None else None


def check_inference(model_id: str) -> None:
    """Raise PermissionDeniedError if the current caller may not infer on
    ``model_id`` (the concrete model a name or vmodel resolved to). Counted
    like the edge's denials. A no-op when no auth layer ran for this call."""
    call = _CALL.get()
    if call is None:
        return
    try:
        authorize(
            call.principal,
            action="infer",
            namespace=call.namespace_of(model_id),
            model_id=model_id,
        )
    except PermissionDeniedError:
        if call.on_denied is not None:
            call.on_denied("forbidden", call.method)
        raise


def may_infer(model_id: str) -> bool:
    """Whether the current caller may infer on ``model_id`` (True when no
    auth layer ran for this call). Not counted: for choosing among
    candidates, where a refusal is no denial."""
    call = _CALL.get()
    if call is None:
        return True
    try:
        authorize(
            call.principal,
            action="infer",
            namespace=call.namespace_of(model_id),
            model_id=model_id,
        )
    except PermissionDeniedError:
        return False
    return True


def check_action(action: Action, *, namespace: str | None) -> None:
    """Raise PermissionDeniedError if the current caller may not do
    ``action`` in ``namespace`` (None: a cluster-wide object, the role alone
    decides). For calls whose namespaces are in the request's payload (the
    resource documents of the admin API), not its fields. Counted like the
    edge's denials; a no-op when no auth layer ran for this call."""
    call = _CALL.get()
    if call is None:
        return
    try:
        authorize(call.principal, action=action, namespace=namespace, model_id=None)
    except PermissionDeniedError:
        if call.on_denied is not None:
            call.on_denied("forbidden", call.method)
        raise


def caller_namespace() -> str | None:
    """The namespace the current caller's plain model names are in: its
    principal's one namespace, when it has exactly one and it is no glob
    (None otherwise, or when no auth layer ran for this call)."""
    call = _CALL.get()
    if call is None:
        return None
    namespaces = call.principal.namespaces
    if len(namespaces) != 1 or any(c in namespaces[0] for c in "*?["):
        return None
    return namespaces[0]


def may_see_namespace(namespace: str) -> bool:
    """Whether a listing shown to the current caller may include what is in
    ``namespace`` (always, when no auth layer ran for this call)."""
    call = _CALL.get()
    return call is None or _covers(call.principal.namespaces, namespace)


def may_see_model(model_id: str) -> bool:
    """Whether a listing shown to the current caller may include ``model_id``
    (always, when no auth layer ran for this call)."""
    call = _CALL.get()
    return call is None or may_see(call.principal, model_id, namespace=call.namespace_of(model_id))
