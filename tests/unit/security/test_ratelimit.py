"""Request rate limits: the token bucket, the limiter, and its REST and gRPC
adapters (in-process servers on loopback)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from meshserve import errors
from meshserve.security import (
    Principal,
    RateLimiter,
    TokenBucket,
    acting_as,
    rate_limiter,
)
from meshserve.server._limits import (
    GrpcRateLimitInterceptor,
    RestRateLimitMiddleware,
    peer_host,
    retry_after,
)
from meshserve.settings import LimitsSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ------------------------------------------------------------------ the bucket


def test_a_bucket_starts_full_then_refills_at_its_rate() -> None:
    bucket = TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # 1 token at 2/s
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token there now
    assert bucket.take(0.5) == 0.0
    # Idle for long: never more than the burst.
    assert [bucket.take(100.0) for _ in range(4)][-1] > 0


def test_a_bucket_tolerates_a_clock_that_does_not_move() -> None:
    bucket = TokenBucket.full(rate=1.0, burst=1, now=5.0)
    assert bucket.take(5.0) == 0.0
    assert bucket.take(4.0) == pytest.approx(1.0)  # earlier reading: no refill, no crash


# ------------------------------------------------------------------ the limiter


def test_the_limiter_keeps_one_bucket_per_caller(clock: FakeClock) -> None:
    refused: list[None] = []
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock, on_limited=lambda: refused.append(None))
    limiter.check("principal:a", caller="principal 'a'")
    limiter.check("principal:a", caller="principal 'a'")
    with pytest.raises(errors.RateLimitedError) as raised:
        limiter.check("principal:a", caller="principal 'a'")
    # Another caller has its own bucket.
    limiter.check("principal:b", caller="principal 'b'")
    message = str(raised.value)
    assert "principal 'a'" in message
    assert "limits.requestsPerSecond is 1 requests/s (burst 2)" in message
    assert raised.value.retry_after_s == pytest.approx(1.0)
    assert raised.value.retryable
    assert len(refused) == 1
    clock.now += 1.0
    limiter.check("principal:a", caller="principal 'a'")


def test_the_default_burst_is_one_seconds_worth(clock: FakeClock) -> None:
    assert RateLimiter(rate=2.5, clock=clock).burst == 3
    assert RateLimiter(rate=0.2, clock=clock).burst == 1
    with pytest.raises(ValueError, match="above 0"):
        RateLimiter(rate=0)


def test_settings_make_a_limiter_only_when_a_rate_is_set() -> None:
    assert rate_limiter(LimitsSettings()) is None
    limiter = rate_limiter(LimitsSettings(requests_per_second=5, request_burst=7))
    assert limiter is not None
    assert (limiter.rate, limiter.burst) == (5, 7)
    settings = LimitsSettings.model_validate({"requestsPerSecond": 1.5, "requestBurst": 2})
    assert settings.requests_per_second == 1.5


def test_memory_is_bounded_by_forgetting_the_least_recent_caller(clock: FakeClock) -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, max_callers=2)
    limiter.check("a", caller="a")
    limiter.check("b", caller="b")
    with pytest.raises(errors.RateLimitedError):
        limiter.check("a", caller="a")  # a is now the most recent
    limiter.check("c", caller="c")  # b is forgotten, a is kept
    with pytest.raises(errors.RateLimitedError):
        limiter.check("a", caller="a")
    limiter.check("b", caller="b")  # a fresh, full bucket


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:5000", "10.0.0.7"),
        ("ipv6:[::1]:5000", "::1"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_peer_host_drops_the_port(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_retry_after_is_whole_seconds_and_at_least_one() -> None:
    assert retry_after(errors.RateLimitedError("x", retry_after_s=0.01)) == "1"
    assert retry_after(errors.RateLimitedError("x", retry_after_s=2.2)) == "3"


# ------------------------------------------------------------------ REST


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v2/models/{name}/infer", _ok, methods=["POST"]),
            Route("/v2/health/ready", _ok),
        ]
    )


class _AsPrincipal:
    """Stands in for the auth middleware: the caller named by a header."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = dict(scope["headers"]).get(b"x-principal")
        if name is None:
            await self._app(scope, receive, send)
            return
        principal = Principal(name=name.decode(), role="viewer", namespaces=("*",))
        with acting_as(principal, method="test"):
            await self._app(scope, receive, send)


async def test_rest_answers_429_with_retry_after_per_caller(clock: FakeClock) -> None:
    refused: list[None] = []
    limiter = RateLimiter(rate=1.0, burst=2, clock=clock, on_limited=lambda: refused.append(None))
    app = _AsPrincipal(RestRateLimitMiddleware(_app(), limiter=limiter))
    transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        infer = "/v2/models/m/infer"
        assert [(await http.post(infer, content=b"x")).status_code for _ in range(2)] == [200, 200]
        refused_response = await http.post(infer, content=b"x" * 1000)
        assert refused_response.status_code == 429
        assert refused_response.headers["retry-after"] == "1"
        assert "client 10.1.2.3" in refused_response.json()["error"]
        # Health probes are never counted; a principal has its own bucket.
        assert (await http.get("/v2/health/ready")).status_code == 200
        as_ci = await http.post(infer, headers={"x-principal": "ci"})
        assert as_ci.status_code == 200
        clock.now += 1.0
        assert (await http.post(infer)).status_code == 200
    assert len(refused) == 1


# ------------------------------------------------------------------ gRPC

_PATH = "/inference.GRPCInferenceService/ModelInfer"
_HEALTH = "/inference.GRPCInferenceService/ServerLive"


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


@contextlib.asynccontextmanager
async def _server(limiter: RateLimiter) -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[GrpcRateLimitInterceptor(limiter=limiter)])
    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(_echo),
        "ServerLive": grpc.unary_unary_rpc_method_handler(_echo),
    }
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("inference.GRPCInferenceService", handlers)]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(grace=None)


async def test_grpc_answers_resource_exhausted_by_client_address(clock: FakeClock) -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    async with _server(limiter) as channel:
        infer = channel.unary_unary(_PATH)
        assert await infer(b"a", timeout=5) == b"a"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await infer(b"b", timeout=5)
        assert raised.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "client 127.0.0.1" in (raised.value.details() or "")
        trailers = dict(raised.value.trailing_metadata() or ())
        assert trailers["retry-after"] == "1"
        assert trailers["meshserve-error"] == "RateLimitedError"
        assert await channel.unary_unary(_HEALTH)(b"h", timeout=5) == b"h"
        clock.now += 1.0
        assert await infer(b"c", timeout=5) == b"c"
