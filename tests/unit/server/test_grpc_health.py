"""The gRPC health service reads readiness at each call: NOT_SERVING while
the instance starts or drains, SERVING while it serves; Watch sends each
change. Over a real grpc.aio server on loopback, behind the same
decode-after-check guard every meshserve server has."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshserve.server._grpc_guard import RequestDecodingInterceptor
from meshserve.server._grpc_health import HealthService

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class Readiness:
    """What the instance's ``server_ready`` answers, set by the test."""

    def __init__(self) -> None:
        self.ready = False

    def __call__(self) -> bool:
        return self.ready


@pytest.fixture
async def served() -> AsyncIterator[tuple[health_pb2_grpc.HealthStub, Readiness]]:
    readiness = Readiness()
    server = grpc.aio.server(interceptors=[RequestDecodingInterceptor()])
    HealthService(ready=readiness, services=["a.Service"], interval_s=0.01).add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield health_pb2_grpc.HealthStub(channel), readiness
    await server.stop(None)


async def _check(stub: health_pb2_grpc.HealthStub, service: str = "") -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(reply.status)


async def test_check_reads_readiness_at_each_call(
    served: tuple[health_pb2_grpc.HealthStub, Readiness],
) -> None:
    stub, readiness = served
    assert (await _check(stub), await _check(stub, "a.Service")) == (NOT_SERVING, NOT_SERVING)
    readiness.ready = True
    assert (await _check(stub), await _check(stub, "a.Service")) == (SERVING, SERVING)
    readiness.ready = False  # draining
    assert await _check(stub) == NOT_SERVING


async def test_check_of_an_unknown_service_is_not_found(
    served: tuple[health_pb2_grpc.HealthStub, Readiness],
) -> None:
    stub, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _check(stub, "other.Service")
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND
    assert "other.Service" in str(raised.value.details())


async def test_watch_sends_each_change_once(
    served: tuple[health_pb2_grpc.HealthStub, Readiness],
) -> None:
    stub, readiness = served
    call = stub.Watch(health_pb2.HealthCheckRequest(service="a.Service"), timeout=30)
    replies = aiter(call)
    assert (await anext(replies)).status == NOT_SERVING
    readiness.ready = True
    assert (await anext(replies)).status == SERVING
    readiness.ready = False
    assert (await anext(replies)).status == NOT_SERVING
    call.cancel()


async def test_watch_of_an_unknown_service_says_so(
    served: tuple[health_pb2_grpc.HealthStub, Readiness],
) -> None:
    stub, _ = served
    call = stub.Watch(health_pb2.HealthCheckRequest(service="other.Service"), timeout=30)
    reply = await asyncio.wait_for(anext(aiter(call)), 10)
    assert reply.status == UNKNOWN
    call.cancel()
