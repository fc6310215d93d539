"""Authentication and authorisation building blocks (meshserve.security)."""

from __future__ import annotations

import hmac
import logging
import os
import pathlib
from collections.abc import Callable

import grpc
import pytest
import yaml

from meshserve import errors, security
from meshserve.protocol import status
from meshserve.security import (
    Action,
    Authenticator,
    AuthSettings,
    Principal,
    Role,
    TokensFile,
    TokensFileError,
    acting_as,
    authorize,
    check_inference,
    current_principal,
    namespace_of,
    parse_bearer,
    token_sha256,
)
from meshserve.server import _auth as server_auth

ADMIN_TOKEN = "admin-secret-token"
EDITOR_TOKEN = "editor-secret-token"
VIEWER_TOKEN = "viewer-secret-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _entry(name: str, token: str | None, role: Role, **extra: object) -> dict[str, object]:
    entry: dict[str, object] = {"name": name, "role": role, "namespaces": ["*"], **extra}
    if token is not None:
        entry["tokenSha256"] = token_sha256(token)
    return entry


def _write(path: pathlib.Path, *entries: dict[str, object], bump_ns: int = 0) -> None:
    path.write_text(yaml.safe_dump({"principals": list(entries)}))
    if bump_ns:
        # Same-second rewrites of the same size: make the change visible.
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump_ns))


@pytest.fixture
def tokens_path(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "tokens.yaml"
    _write(
        path,
        _entry("root", ADMIN_TOKEN, "admin"),
        _entry("ci", EDITOR_TOKEN, "editor", namespaces=["team-a"]),
        _entry("dash", VIEWER_TOKEN, "viewer", namespaces=["team-a", "default"]),
        _entry("billing", None, "viewer"),
    )
    return path


def _authenticator(
    path: pathlib.Path,
    clock: Callable[[], float] | None = None,
    mtls: dict[str, str] | None = None,
) -> Authenticator:
    settings = AuthSettings(
        enabled=True, tokens_file=path, mtls_identities=mtls or {}, reload_interval_s=5.0
    )
    return Authenticator.from_settings(settings, clock=clock or FakeClock())


# -- settings ----------------------------------------------------------


def test_settings_take_camel_case_and_need_a_tokens_file_when_enabled(
    tokens_path: pathlib.Path,
) -> None:
    settings = AuthSettings.model_validate(
        {"enabled": True, "tokensFile": str(tokens_path), "mtlsIdentities": {"svc": "billing"}}
    )
    assert settings.tokens_file == tokens_path
    assert settings.mtls_identities == {"svc": "billing"}
    assert not AuthSettings().enabled
    with pytest.raises(ValueError, match="tokensFile"):
        AuthSettings(enabled=True)


def test_an_authenticator_is_not_built_for_disabled_auth(tokens_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="not enabled"):
        Authenticator.from_settings(AuthSettings(tokens_file=tokens_path))


# -- the tokens file ---------------------------------------------------


def test_tokens_file_gives_each_principal_its_role_and_scope(tokens_path: pathlib.Path) -> None:
    table = TokensFile.open(tokens_path).current()
    assert set(table.by_name) == {"root", "ci", "dash", "billing"}
    assert table.by_name["ci"] == Principal(
        name="ci", role="editor", namespaces=("team-a",), models=None
    )
    assert len(table.tokens) == 3  # billing has no token (mTLS only)


def test_tokens_file_accepts_snake_case_keys(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "principals": [
                    {
                        "name": "x",
                        "token_sha256": token_sha256("t").upper(),
                        "role": "viewer",
                        "namespaces": ["*"],
                        "models": ["fraud-*"],
                    }
                ]
            }
        )
    )
    authenticator = Authenticator(principals=TokensFile.open(path))
    principal = authenticator.authenticate(bearer="t", peer_cn=None)
    assert principal.models == ("fraud-*",)


INVALID_FILES = [
    ("not: [valid", "not valid YAML"),
    ("- just a list", "top level"),
    (yaml.safe_dump({"principals": [{"name": "a", "role": "owner", "namespaces": ["*"]}]}), "role"),
    (
        yaml.safe_dump({"principals": [{"name": "a", "role": "viewer", "namespaces": []}]}),
        "namespaces",
    ),
    (
        yaml.safe_dump(
            {"principals": [{"name": "a", "role": "viewer", "namespaces": ["*"], "extra": 1}]}
        ),
        "extra",
    ),
    (
        yaml.safe_dump(
            {"principals": [{"name": "a", "role": "viewer", "namespaces": ["*"], "models": [""]}]}
        ),
        "empty",
    ),
    (
        yaml.safe_dump({"principals": [_entry("a", "t", "viewer"), _entry("a", "u", "admin")]}),
        "twice",
    ),
    (
        yaml.safe_dump({"principals": [_entry("a", "t", "viewer"), _entry("b", "t", "admin")]}),
        "shares its token",
    ),
]


@pytest.mark.parametrize(("text", "problem"), INVALID_FILES)
def test_an_invalid_tokens_file_is_refused_at_start(
    tmp_path: pathlib.Path, text: str, problem: str
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(TokensFileError, match=problem) as caught:
        TokensFile.open(path)
    assert str(path) in str(caught.value)


def test_a_raw_token_in_place_of_its_hash_is_not_repeated_in_the_error(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "t.yaml"
    secret = "sk-live-a-real-token-pasted-by-mistake"
    path.write_text(
        yaml.safe_dump(
            {
                "principals": [
                    {"name": "a", "role": "viewer", "namespaces": ["*"], "tokenSha256": secret}
                ]
            }
        )
    )
    with pytest.raises(TokensFileError) as caught:
        TokensFile.open(path)
    assert "tokenSha256" in str(caught.value)
    assert secret not in str(caught.value)


def test_a_yaml_error_does_not_quote_the_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "t.yaml"
    secret = "sk-quoted-secret"
    path.write_text(f"principals:\n  - name: a\n    tokenSha256: [{secret}\n")
    with pytest.raises(TokensFileError, match="line") as caught:
        TokensFile.open(path)
    assert secret not in str(caught.value)


def test_a_missing_tokens_file_is_refused_at_start(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TokensFileError, match="cannot read"):
        TokensFile.open(tmp_path / "absent.yaml")


def test_the_tokens_file_is_reloaded_when_it_changes(tokens_path: pathlib.Path) -> None:
    clock = FakeClock()
    authenticator = _authenticator(tokens_path, clock)
    assert authenticator.authenticate(bearer=VIEWER_TOKEN, peer_cn=None).name == "dash"

    _write(tokens_path, _entry("newcomer", "new-token", "viewer"), bump_ns=10**9)
    clock.now += 4.9  # within the interval: the file is not looked at
    assert authenticator.authenticate(bearer=VIEWER_TOKEN, peer_cn=None).name == "dash"

    clock.now += 0.2
    assert authenticator.authenticate(bearer="new-token", peer_cn=None).name == "newcomer"
    with pytest.raises(errors.UnauthenticatedError):  # revoked
        authenticator.authenticate(bearer=VIEWER_TOKEN, peer_cn=None)


def test_a_broken_rewrite_keeps_the_last_good_file(
    tokens_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    authenticator = _authenticator(tokens_path, clock)
    tokens_path.write_text("principals: [ {name: half-writ")
    for _ in range(3):
        clock.now += 10
        with caplog.at_level(logging.WARNING):
            assert authenticator.authenticate(bearer=ADMIN_TOKEN, peer_cn=None).name == "root"
    warnings = [r for r in caplog.records if "not reloaded" in r.getMessage()]
    assert len(warnings) == 1  # once per broken version, not per check

    tokens_path.unlink()
    clock.now += 10
    assert authenticator.authenticate(bearer=ADMIN_TOKEN, peer_cn=None).name == "root"

    _write(tokens_path, _entry("fixed", "fixed-token", "admin"), bump_ns=2 * 10**9)
    clock.now += 10
    assert authenticator.authenticate(bearer="fixed-token", peer_cn=None).name == "fixed"


# -- authentication ----------------------------------------------------


def test_no_credential_or_an_unknown_one_is_unauthenticated(tokens_path: pathlib.Path) -> None:
    authenticator = _authenticator(tokens_path)
    with pytest.raises(errors.UnauthenticatedError, match="credential is required"):
        authenticator.authenticate(bearer=None, peer_cn=None)
    with pytest.raises(errors.UnauthenticatedError) as caught:
        authenticator.authenticate(bearer="guessed-token", peer_cn=None)
    assert "guessed-token" not in str(caught.value)


def test_a_mapped_client_certificate_identifies_a_principal(tokens_path: pathlib.Path) -> None:
    authenticator = _authenticator(tokens_path, mtls={"billing-svc": "billing", "ghost": "nobody"})
    assert authenticator.authenticate(bearer=None, peer_cn="billing-svc").name == "billing"
    with pytest.raises(errors.UnauthenticatedError, match="'stranger' is not mapped"):
        authenticator.authenticate(bearer=None, peer_cn="stranger")
    # Mapped to a name the tokens file does not have.
    with pytest.raises(errors.UnauthenticatedError):
        authenticator.authenticate(bearer=None, peer_cn="ghost")


def test_a_bearer_token_decides_over_a_certificate(tokens_path: pathlib.Path) -> None:
    authenticator = _authenticator(tokens_path, mtls={"billing-svc": "billing"})
    assert authenticator.authenticate(bearer=EDITOR_TOKEN, peer_cn="billing-svc").name == "ci"
    with pytest.raises(errors.UnauthenticatedError):
        authenticator.authenticate(bearer="wrong", peer_cn="billing-svc")


def test_token_digests_are_compared_in_constant_time_against_every_entry(
    tokens_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authenticator = _authenticator(tokens_path)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    # The module calls hmac.compare_digest through the hmac module.
    monkeypatch.setattr(hmac, "compare_digest", spy)
    # The first entry matches; the others are compared all the same.
    assert authenticator.authenticate(bearer=ADMIN_TOKEN, peer_cn=None).name == "root"
    assert len(calls) == 3
    assert all(len(a) == len(b) == 32 for a, b in calls)


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER x.y.z", "x.y.z")],
)
def test_parse_bearer_reads_the_token(header: str | None, token: str | None) -> None:
    assert parse_bearer(header) == token


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "abc"])
def test_parse_bearer_refuses_other_schemes_without_echoing_them(header: str) -> None:
    with pytest.raises(errors.UnauthenticatedError) as caught:
        parse_bearer(header)
    assert "dXNlcjpwYXNz" not in str(caught.value)


# -- authorisation -----------------------------------------------------

ACTIONS: tuple[Action, ...] = ("infer", "read", "write", "admin")
ALLOWED: dict[Role, set[Action]] = {
    "viewer": {"infer", "read"},
    "editor": {"infer", "read", "write"},
    "admin": {"infer", "read", "write", "admin"},
}


@pytest.mark.parametrize("role", list(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_roles_allow_exactly_their_actions(role: Role, action: Action) -> None:
    principal = Principal(name="p", role=role, namespaces=("*",))
    if action in ALLOWED[role]:
        authorize(principal, action=action, namespace="team-a", model_id="team-a/m")
    else:
        with pytest.raises(errors.PermissionDeniedError, match=f"role {role}"):
            authorize(principal, action=action, namespace="team-a", model_id="team-a/m")


def test_namespaces_narrow_every_action() -> None:
    principal = Principal(name="p", role="admin", namespaces=("team-a", "shared-*"))
    authorize(principal, action="write", namespace="team-a", model_id="team-a/m")
    authorize(principal, action="infer", namespace="shared-x", model_id="shared-x/m")
    for namespace in ("team-b", "default", "team-a-other"):
        with pytest.raises(errors.PermissionDeniedError, match=f"namespace '{namespace}'"):
            authorize(principal, action="infer", namespace=namespace, model_id=None)
    # A listing (no namespace) checks only the role.
    authorize(principal, action="read", namespace=None, model_id=None)


def test_models_narrow_a_credential_to_some_model_ids() -> None:
    principal = Principal(name="p", role="viewer", namespaces=("*",), models=("fraud-*", "churn"))
    authorize(principal, action="infer", namespace="default", model_id="fraud-v2")
    authorize(principal, action="infer", namespace="default", model_id="churn")
    for model_id in ("churn-v2", "other", "team-a/fraud-1"):
        with pytest.raises(errors.PermissionDeniedError, match=f"model '{model_id}'"):
            authorize(principal, action="infer", namespace="default", model_id=model_id)


def test_may_see_filters_listings() -> None:
    principal = Principal(name="p", role="viewer", namespaces=("team-a",), models=("team-a/x*",))
    assert security.may_see(principal, "team-a/x1", namespace="team-a")
    assert not security.may_see(principal, "team-a/y", namespace="team-a")
    assert not security.may_see(principal, "team-b/x1", namespace="team-b")


@pytest.mark.parametrize(
    ("model_id", "namespace"),
    [
        ("team-a/fraud", "team-a"),
        ("fraud", "default"),
        ("/fraud", "default"),
        ("team-a/", "default"),
        ("a/b/c", "a"),
    ],
)
def test_namespace_of(model_id: str, namespace: str) -> None:
    assert namespace_of(model_id) == namespace


# -- the caller of the current call -----------------------------------


def test_check_inference_is_a_no_op_without_an_auth_layer() -> None:
    assert current_principal() is None
    check_inference("team-b/anything")


def test_check_inference_checks_the_bound_caller_and_counts_denials() -> None:
    denials: list[tuple[str, str]] = []
    principal = Principal(name="p", role="viewer", namespaces=("team-a",))
    with acting_as(principal, method="/svc/M", on_denied=lambda k, m: denials.append((k, m))):
        assert current_principal() is principal
        check_inference("team-a/m")
        with pytest.raises(errors.PermissionDeniedError):
            check_inference("team-b/m")
    assert denials == [("forbidden", "/svc/M")]
    assert current_principal() is None


def test_check_inference_uses_the_namespace_rule_it_was_given() -> None:
    principal = Principal(name="p", role="viewer", namespaces=("tenant-1",))
    with acting_as(principal, method="m", namespace_of=lambda model_id: model_id.split(".")[0]):
        check_inference("tenant-1.model")
        with pytest.raises(errors.PermissionDeniedError):
            check_inference("tenant-2.model")


# -- wire codes --------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "http"),
    [
        (errors.UnauthenticatedError("who?"), grpc.StatusCode.UNAUTHENTICATED, 401),
        (errors.PermissionDeniedError("no"), grpc.StatusCode.PERMISSION_DENIED, 403),
    ],
)
def test_auth_errors_map_to_their_codes_and_back(
    error: errors.MeshServeError, code: grpc.StatusCode, http: int
) -> None:
    assert status.grpc_code(error) is code
    assert status.http_status(error) == http
    assert not error.retryable
    assert type(status.error_from_rpc(code, str(error), status.error_trailers(error))) is type(
        error
    )
    assert type(status.error_from_rpc(code, "x", None)) is type(error)


# -- REST classification ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "action", "name", "label"),
    [
        ("GET", "/v2/health/live", None, None, None),
        ("GET", "/v2/health/ready", None, None, None),
        ("GET", "/v2", None, None, None),
        ("GET", "/live", None, None, None),
        ("GET", "/ready", None, None, None),
        ("GET", "/v2/openapi.json", "read", None, "GET /v2/openapi.json"),
        ("GET", "/docs", "read", None, "GET /docs"),
        ("GET", "/docs/swagger-ui.css", "read", None, "GET /docs/{asset}"),
        ("GET", "/v2/models/m", "infer", "m", "GET /v2/models/{name}"),
        ("GET", "/v2/models/m/ready", "infer", "m", "GET /v2/models/{name}/ready"),
        ("POST", "/v2/models/m/infer", "infer", "m", "POST /v2/models/{name}/infer"),
        (
            "POST",
            "/v2/models/m/versions/3/infer",
            "infer",
            "m",
            "POST /v2/models/{name}/versions/{version}/infer",
        ),
        (
            "GET",
            "/v2/models/m/versions/3",
            "infer",
            "m",
            "GET /v2/models/{name}/versions/{version}",
        ),
        ("GET", "/v2/models/m/other", "admin", None, "GET (other)"),
        # The status page's shell holds no data; its snapshot is a listing.
        ("GET", "/status", None, None, None),
        ("GET", "/status.json", "read", None, "GET /status.json"),
        ("DELETE", "/v2/repository", "admin", None, "DELETE (other)"),
    ],
)
def test_rest_calls_are_classified_like_the_routes(
    method: str, path: str, action: str | None, name: str | None, label: str | None
) -> None:
    call = server_auth.rest_call(method, path)
    if action is None:
        assert call is None
        return
    assert call is not None
    assert (call.rule.action, call.model_name, call.rule.label) == (action, name, label)


def test_every_management_and_inference_method_has_a_rule() -> None:
    from meshserve.protocol._pb import (
        grpc_predict_v2_pb2,
        meshserve_admin_pb2,
        model_mesh_pb2,
    )

    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (grpc_predict_v2_pb2, model_mesh_pb2, meshserve_admin_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods <= set(server_auth.GRPC_RULES)
    for name, rule in server_auth.GRPC_RULES.items():
        if rule is None or not rule.model_fields:
            continue
        service = name.split("/")[1]
        module = {
            "inference.GRPCInferenceService": grpc_predict_v2_pb2,
            "mmesh.ModelMesh": model_mesh_pb2,
            "meshserve.admin.v1.Admin": meshserve_admin_pb2,
        }[service]
        descriptor = module.DESCRIPTOR.services_by_name[service.split(".")[-1]]
        request = descriptor.methods_by_name[name.split("/")[2]].input_type
        assert set(rule.model_fields) <= set(request.fields_by_name), name


@pytest.mark.parametrize(
    ("scope", "cn"),
    [
        ({}, None),
        ({"extensions": {"tls": {"client_cert_name": None}}}, None),
        (
            {
                "extensions": {
                    "tls": {"client_cert_name": "CN=svc-a,O=Org", "client_cert_error": None}
                }
            },
            "svc-a",
        ),
        (
            {
                "extensions": {
                    "tls": {"client_cert_name": "CN=svc-a", "client_cert_error": "expired"}
                }
            },
            None,
        ),
        ({"extensions": {"tls": {"client_cert_name": "O=Org", "client_cert_error": None}}}, None),
    ],
)
def test_tls_extension_cn_only_trusts_verified_certificates(
    scope: dict[str, object], cn: str | None
) -> None:
    assert server_auth.tls_extension_cn(scope) == cn


@pytest.mark.parametrize(
    ("namespaces", "expected"),
    [(("team-a",), "team-a"), (("team-a", "team-b"), None), (("team-*",), None), (("*",), None)],
)
def test_the_callers_namespace_is_its_principals_only_literal_one(
    namespaces: tuple[str, ...], expected: str | None
) -> None:
    assert security.caller_namespace() is None  # no auth layer ran
    principal = Principal(name="p", role="viewer", namespaces=namespaces)
    with acting_as(principal, method="/inference.GRPCInferenceService/ModelInfer"):
        assert security.caller_namespace() == expected
