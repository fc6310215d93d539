"""The auth layer on real servers: a grpc.aio server with the interceptor
and a uvicorn-served Starlette app with the middleware, on 127.0.0.1.

Generic handlers stand in for the services: they take the real request
messages (so the interceptor reads the real fields) and answer with empty
replies. The inference stand-ins resolve ``team-a/alias`` to a model in
another namespace and call ``check_inference`` on it, as the instance does
after resolving a vmodel.
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from meshserve import errors, security
from meshserve.protocol import status
from meshserve.protocol._pb import grpc_predict_v2_pb2, meshserve_admin_pb2, model_mesh_pb2
from meshserve.security import (
    Authenticator,
    AuthSettings,
    DenialKind,
    Role,
    TlsSettings,
    grpc_server_credentials,
    token_sha256,
)
from meshserve.server import GrpcAuthInterceptor, RestAuthMiddleware
from meshserve.server._rest_errors import json_response, reports_errors
from meshserve.server._rest_server import RestServer

pytestmark = pytest.mark.integration

TOKENS: dict[str, str] = {
    "root": "tok-root",
    "editor-a": "tok-editor-a",
    "viewer-a": "tok-viewer-a",
    "fraud-only": "tok-fraud-only",
}

_PRINCIPALS = [
    {"name": "root", "role": "admin", "namespaces": ["*"]},
    {"name": "editor-a", "role": "editor", "namespaces": ["team-a"]},
    {"name": "viewer-a", "role": "viewer", "namespaces": ["team-a", "default"]},
    {"name": "fraud-only", "role": "viewer", "namespaces": ["*"], "models": ["team-a/fraud-*"]},
    {"name": "svc", "role": "viewer", "namespaces": ["*"]},  # mTLS only
]

ROLE_PRINCIPAL: dict[Role, str] = {"admin": "root", "editor": "editor-a", "viewer": "viewer-a"}
ROLE_ACTIONS: dict[Role, set[str]] = {
    "viewer": {"infer", "read"},
    "editor": {"infer", "read", "write"},
    "admin": {"infer", "read", "write", "admin"},
}

# The alias an inference handler resolves, as a vmodel would.
ALIASES = {"team-a/alias": "team-b/secret", "alias": "team-b/secret"}


@pytest.fixture
def authenticator(tmp_path: pathlib.Path) -> Authenticator:
    entries = []
    for entry in _PRINCIPALS:
        token = TOKENS.get(str(entry["name"]))
        entries.append({**entry, **({"tokenSha256": token_sha256(token)} if token else {})})
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"principals": entries}))
    settings = AuthSettings(
        enabled=True, tokens_file=path, mtls_identities={"svc-client": "svc", "rogue": "none"}
    )
    return Authenticator.from_settings(settings)


@dataclass
class Denials:
    seen: list[tuple[DenialKind, str]] = field(default_factory=list)

    def __call__(self, kind: DenialKind, method: str) -> None:
        self.seen.append((kind, method))


# -- gRPC --------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    path: str
    request: type[Any]
    response: type[Any]
    action: str | None
    model_fields: tuple[str, ...]


def _methods() -> list[Method]:
    from meshserve.server._auth import GRPC_RULES

    found = []
    for module in (grpc_predict_v2_pb2, model_mesh_pb2, meshserve_admin_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                rule = GRPC_RULES[path]
                found.append(
                    Method(
                        path=path,
                        request=getattr(module, method.input_type.name),
                        response=getattr(module, method.output_type.name),
                        action=rule.action if rule else None,
                        model_fields=rule.model_fields if rule else (),
                    )
                )
    return found


METHODS = _methods()
GUARDED = [m for m in METHODS if m.action is not None]
MANAGEMENT = [m for m in GUARDED if not m.path.startswith("/inference.")]
# Listings name no namespace; the servicer filters their entries.
MANAGEMENT_OF_A_MODEL = [m for m in MANAGEMENT if m.model_fields]


def _handler(method: Method) -> grpc.RpcMethodHandler:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        name = getattr(request, "model_name", "") or getattr(request, "name", "")
        if name in ALIASES:
            try:
                security.check_inference(ALIASES[name])
            except errors.MeshServeError as exc:
                await context.abort(status.grpc_code(exc), str(exc))
        return method.response()

    return grpc.unary_unary_rpc_method_handler(
        behavior,
        request_deserializer=method.request.FromString,
        response_serializer=method.response.SerializeToString,
    )


async def _numbers(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for n in range(3):
        yield bytes([n])


@contextlib.asynccontextmanager
async def _grpc_server(
    interceptor: GrpcAuthInterceptor, credentials: grpc.ServerCredentials | None = None
) -> AsyncIterator[int]:
    server = grpc.aio.server(interceptors=[interceptor])
    services: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for method in METHODS:
        service, name = method.path[1:].split("/")
        services.setdefault(service, {})[name] = _handler(method)
    # A method nobody listed, streaming its answer.
    services["test.Extra"] = {"Numbers": grpc.unary_stream_rpc_method_handler(_numbers)}
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(s, h) for s, h in services.items()]
    )
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield port
    finally:
        await server.stop(grace=None)


@pytest.fixture
def denials() -> Denials:
    return Denials()


@pytest.fixture
async def grpc_channel(
    authenticator: Authenticator, denials: Denials
) -> AsyncIterator[grpc.aio.Channel]:
    interceptor = GrpcAuthInterceptor(authenticator=authenticator, on_denied=denials)
    async with (
        _grpc_server(interceptor) as port,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        yield channel


def _request(method: Method, model_id: str) -> Any:
    return method.request(**{field: model_id for field in method.model_fields})


async def _call(
    channel: grpc.aio.Channel,
    method: Method,
    *,
    token: str | None = None,
    model_id: str = "team-a/m",
    metadata: tuple[tuple[str, str], ...] = (),
) -> grpc.StatusCode:
    if token is not None:
        metadata = (("authorization", f"Bearer {token}"), *metadata)
    stub = channel.unary_unary(
        method.path,
        request_serializer=method.request.SerializeToString,
        response_deserializer=method.response.FromString,
    )
    try:
        await stub(_request(method, model_id), metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _method(path: str) -> Method:
    return next(m for m in METHODS if m.path == path)


INFER = "/inference.GRPCInferenceService/ModelInfer"
REGISTER = "/mmesh.ModelMesh/registerModel"


@pytest.mark.parametrize("method", GUARDED, ids=lambda m: m.path)
async def test_grpc_no_credential_is_unauthenticated(
    grpc_channel: grpc.aio.Channel, denials: Denials, method: Method
) -> None:
    assert await _call(grpc_channel, method) is grpc.StatusCode.UNAUTHENTICATED
    assert await _call(grpc_channel, method, token="forged") is grpc.StatusCode.UNAUTHENTICATED
    assert denials.seen == [("unauthenticated", method.path)] * 2


async def test_grpc_health_and_server_metadata_are_open(
    grpc_channel: grpc.aio.Channel, denials: Denials
) -> None:
    open_methods = [m for m in METHODS if m.action is None]
    assert {m.path.split("/")[2] for m in open_methods} == {
        "ServerLive",
        "ServerReady",
        "ServerMetadata",
    }
    for method in open_methods:
        assert await _call(grpc_channel, method) is grpc.StatusCode.OK
    assert denials.seen == []


@pytest.mark.parametrize("role", list(ROLE_PRINCIPAL))
@pytest.mark.parametrize("method", MANAGEMENT, ids=lambda m: m.path)
async def test_grpc_every_role_on_every_management_call(
    grpc_channel: grpc.aio.Channel, denials: Denials, role: Role, method: Method
) -> None:
    token = TOKENS[ROLE_PRINCIPAL[role]]
    allowed = method.action in ROLE_ACTIONS[role]
    code = await _call(grpc_channel, method, token=token)
    assert code is (grpc.StatusCode.OK if allowed else grpc.StatusCode.PERMISSION_DENIED)
    assert denials.seen == ([] if allowed else [("forbidden", method.path)])


@pytest.mark.parametrize("method", MANAGEMENT_OF_A_MODEL, ids=lambda m: m.path)
async def test_grpc_management_scoped_to_a_namespace_is_denied_in_another(
    grpc_channel: grpc.aio.Channel, method: Method
) -> None:
    token = TOKENS["editor-a"]
    assert await _call(grpc_channel, method, token=token, model_id="team-a/m") is (
        grpc.StatusCode.OK
    )
    assert await _call(grpc_channel, method, token=token, model_id="team-b/m") is (
        grpc.StatusCode.PERMISSION_DENIED
    )


@pytest.mark.parametrize(
    "path",
    [
        "/inference.GRPCInferenceService/ModelInfer",
        "/inference.GRPCInferenceService/ModelMetadata",
        "/inference.GRPCInferenceService/ModelReady",
    ],
)
async def test_grpc_inference_scoped_to_a_namespace_is_denied_in_another(
    grpc_channel: grpc.aio.Channel, denials: Denials, path: str
) -> None:
    method, token = _method(path), TOKENS["viewer-a"]
    assert await _call(grpc_channel, method, token=token, model_id="team-a/m") is (
        grpc.StatusCode.OK
    )
    assert await _call(grpc_channel, method, token=token, model_id="team-b/m") is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert await _call(grpc_channel, method, token=token, model_id="m") is (
        grpc.StatusCode.OK  # in the default namespace, which viewer-a has too
    )
    assert denials.seen == [("forbidden", path)]


async def test_grpc_routing_headers_are_checked_too(grpc_channel: grpc.aio.Channel) -> None:
    infer, token = _method(INFER), TOKENS["viewer-a"]
    for header in ("mm-vmodel-id", "mm-model-id"):
        code = await _call(
            grpc_channel, infer, token=token, model_id="", metadata=((header, "team-b/m"),)
        )
        assert code is grpc.StatusCode.PERMISSION_DENIED
    ok = await _call(grpc_channel, infer, token=token, metadata=(("mm-vmodel-id", "team-a/v"),))
    assert ok is grpc.StatusCode.OK


async def test_grpc_a_credential_limited_to_models(grpc_channel: grpc.aio.Channel) -> None:
    infer, token = _method(INFER), TOKENS["fraud-only"]
    assert await _call(grpc_channel, infer, token=token, model_id="team-a/fraud-2") is (
        grpc.StatusCode.OK
    )
    assert await _call(grpc_channel, infer, token=token, model_id="team-a/churn") is (
        grpc.StatusCode.PERMISSION_DENIED
    )


async def test_grpc_the_resolved_model_is_checked_by_the_handler(
    grpc_channel: grpc.aio.Channel, denials: Denials
) -> None:
    # team-a/alias is in the viewer's namespace; what it resolves to is not.
    infer = _method(INFER)
    code = await _call(grpc_channel, infer, token=TOKENS["viewer-a"], model_id="team-a/alias")
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert denials.seen == [("forbidden", INFER)]
    assert await _call(grpc_channel, infer, token=TOKENS["root"], model_id="team-a/alias") is (
        grpc.StatusCode.OK
    )


async def test_grpc_a_method_nobody_listed_needs_admin(
    grpc_channel: grpc.aio.Channel, denials: Denials
) -> None:
    numbers = grpc_channel.unary_stream("/test.Extra/Numbers")

    async def collect(token: str) -> list[bytes] | grpc.StatusCode:
        try:
            call = numbers(b"", metadata=(("authorization", f"Bearer {token}"),), timeout=5)
            return [reply async for reply in call]
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    assert await collect(TOKENS["editor-a"]) is grpc.StatusCode.PERMISSION_DENIED
    assert await collect(TOKENS["root"]) == [b"\x00", b"\x01", b"\x02"]
    assert denials.seen == [("forbidden", "/test.Extra/Numbers")]


async def test_grpc_denials_carry_the_error_type_for_meshserve_clients(
    grpc_channel: grpc.aio.Channel,
) -> None:
    register = _method(REGISTER)
    stub = grpc_channel.unary_unary(
        register.path,
        request_serializer=register.request.SerializeToString,
        response_deserializer=register.response.FromString,
    )
    for metadata, expected in (
        ((), errors.UnauthenticatedError),
        ((("authorization", f"Bearer {TOKENS['viewer-a']}"),), errors.PermissionDeniedError),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(_request(register, "team-a/m"), metadata=metadata, timeout=5)
        error = status.error_from_rpc(
            caught.value.code(), caught.value.details(), caught.value.trailing_metadata()
        )
        assert type(error) is expected


# -- gRPC with client certificates -------------------------------------


def _pkcs8(cert: trustme.LeafCert) -> bytes:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _chain(cert: trustme.LeafCert) -> bytes:
    return b"".join(blob.bytes() for blob in cert.cert_chain_pems)


@dataclass
class Pki:
    ca: trustme.CA
    server: TlsSettings

    def client(self, common_name: str) -> grpc.ChannelCredentials:
        cert = self.ca.issue_cert(f"{common_name}.test", common_name=common_name)
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem.bytes(),
            private_key=_pkcs8(cert),
            certificate_chain=_chain(cert),
        )


@pytest.fixture
def pki(tmp_path: pathlib.Path) -> Pki:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", common_name="server")
    (tmp_path / "tls.crt").write_bytes(_chain(server))
    (tmp_path / "tls.key").write_bytes(_pkcs8(server))
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem.bytes())
    settings = TlsSettings(
        cert_file=tmp_path / "tls.crt",
        key_file=tmp_path / "tls.key",
        ca_file=tmp_path / "ca.crt",
        client_auth="require",
    )
    return Pki(ca=ca, server=settings)


async def test_grpc_a_client_certificate_identifies_a_principal(
    authenticator: Authenticator, denials: Denials, pki: Pki
) -> None:
    interceptor = GrpcAuthInterceptor(authenticator=authenticator, on_denied=denials)
    async with _grpc_server(interceptor, grpc_server_credentials(pki.server)) as port:
        target = f"127.0.0.1:{port}"
        async with grpc.aio.secure_channel(target, pki.client("svc-client")) as channel:
            assert await _call(channel, _method(INFER)) is grpc.StatusCode.OK
            # svc is a viewer: it may infer, not register.
            assert await _call(channel, _method(REGISTER)) is grpc.StatusCode.PERMISSION_DENIED
            # A bearer token decides over the certificate.
            assert await _call(channel, _method(REGISTER), token=TOKENS["root"]) is (
                grpc.StatusCode.OK
            )
        async with grpc.aio.secure_channel(target, pki.client("stranger")) as channel:
            assert await _call(channel, _method(INFER)) is grpc.StatusCode.UNAUTHENTICATED
    assert denials.seen == [("forbidden", REGISTER), ("unauthenticated", INFER)]


# -- REST --------------------------------------------------------------


@reports_errors
async def _infer(request: Request) -> Response:
    name = request.path_params["name"]
    security.check_inference(ALIASES.get(name, name))
    await request.body()
    return json_response({"model_name": name})


@reports_errors
async def _live(request: Request) -> Response:
    return json_response({"live": True})


@reports_errors
async def _metadata(request: Request) -> Response:
    principal = security.current_principal()
    caller = principal.name if principal is not None else None
    return json_response({"name": request.path_params["name"], "caller": caller})


def _rest_app(authenticator: Authenticator, denials: Denials) -> Starlette:
    return Starlette(
        routes=[
            Route("/v2/health/live", _live, methods=["GET"]),
            Route("/v2/models/{name}", _metadata, methods=["GET"]),
            Route("/v2/models/{name}/infer", _infer, methods=["POST"]),
        ],
        middleware=[Middleware(RestAuthMiddleware, authenticator=authenticator, on_denied=denials)],
    )


@pytest.fixture
async def rest(authenticator: Authenticator, denials: Denials) -> AsyncIterator[httpx.AsyncClient]:
    server = RestServer(app=_rest_app(authenticator, denials), host="127.0.0.1", port=0)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield client


def _bearer(principal: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[principal]}"}


INFER_LABEL = "POST /v2/models/{name}/infer"


async def test_rest_no_credential_is_401_with_a_challenge(
    rest: httpx.AsyncClient, denials: Denials
) -> None:
    for headers in ({}, {"Authorization": "Bearer forged"}, {"Authorization": "Basic eDp5"}):
        reply = await rest.post("/v2/models/m/infer", json={}, headers=headers)
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert set(reply.json()) == {"error"}
        assert "forged" not in reply.text
    assert denials.seen == [("unauthenticated", INFER_LABEL)] * 3


async def test_rest_a_large_refused_body_still_gets_its_401(rest: httpx.AsyncClient) -> None:
    reply = await rest.post("/v2/models/m/infer", content=b"x" * (4 * 1024 * 1024))
    assert reply.status_code == 401


async def test_rest_health_is_open(rest: httpx.AsyncClient, denials: Denials) -> None:
    reply = await rest.get("/v2/health/live")
    assert reply.status_code == 200
    assert reply.json() == {"live": True}
    assert denials.seen == []


async def test_rest_wrong_scope_is_403_and_a_good_token_is_served(
    rest: httpx.AsyncClient, denials: Denials
) -> None:
    headers = _bearer("viewer-a")
    # The namespace is part of the id; REST names it in a header.
    ok = await rest.post(
        "/v2/models/x/infer", json={}, headers={**headers, "mm-model-id": "team-a/m"}
    )
    assert ok.status_code == 200
    denied = await rest.post(
        "/v2/models/x/infer", json={}, headers={**headers, "mm-vmodel-id": "team-b/v"}
    )
    assert denied.status_code == 403
    assert "team-b" in denied.json()["error"]
    other_ns = await rest.get("/v2/models/m", headers={**headers, "mm-model-id": "team-c/m"})
    assert other_ns.status_code == 403
    fraud = await rest.get("/v2/models/anything", headers=_bearer("fraud-only"))
    assert fraud.status_code == 403
    assert denials.seen == [
        ("forbidden", INFER_LABEL),
        ("forbidden", "GET /v2/models/{name}"),
        ("forbidden", "GET /v2/models/{name}"),
    ]


async def test_rest_the_endpoint_sees_the_caller_and_checks_what_resolved(
    rest: httpx.AsyncClient, denials: Denials
) -> None:
    reply = await rest.get("/v2/models/m", headers=_bearer("root"))
    assert reply.json() == {"name": "m", "caller": "root"}
    # "alias" is in viewer-a's default namespace; what it resolves to is not.
    denied = await rest.post("/v2/models/alias/infer", json={}, headers=_bearer("viewer-a"))
    assert denied.status_code == 403
    assert "namespace 'team-b'" in denied.json()["error"]
    assert denials.seen == [("forbidden", INFER_LABEL)]
    served = await rest.post("/v2/models/alias/infer", json={}, headers=_bearer("root"))
    assert served.json() == {"model_name": "alias"}


async def test_rest_unknown_routes_need_admin(rest: httpx.AsyncClient, denials: Denials) -> None:
    assert (await rest.get("/v2/repository/index", headers=_bearer("editor-a"))).status_code == 403
    assert (await rest.get("/v2/repository/index", headers=_bearer("root"))).status_code == 404
    assert denials.seen == [("forbidden", "GET (other)")]
