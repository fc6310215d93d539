"""The decode byte budget, alone and in front of the REST app, and where
the REST app decodes large bodies (in-process server on loopback)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from meshserve import errors
from meshserve.protocol import codecs
from meshserve.server._budget import DecodeBudget
from meshserve.server._rest import RestServer, create_rest_app
from tests.unit.server.test_rest import FakeBackend

MIB = 1024 * 1024


def test_reservations_share_the_limit_and_give_back_what_they_held() -> None:
    refused: list[None] = []
    budget = DecodeBudget(limit_bytes=10 * MIB, on_refused=lambda: refused.append(None))
    with budget.reservation() as first:
        first.grow(6 * MIB)
        with budget.reservation() as second:
            second.grow(3 * MIB)
            with pytest.raises(errors.ServerBusyError) as busy:
                second.grow(2 * MIB)
            # A refused growth holds nothing more.
            assert second.size == 3 * MIB and budget.in_use == 9 * MIB
            second.grow(1 * MIB)  # exactly at the limit
        assert budget.in_use == 6 * MIB
    assert budget.in_use == 0
    assert len(refused) == 1
    assert busy.value.retry_after_s > 0
    message = str(busy.value)
    assert "server.maxInflightDecodeBytes" in message
    assert f"it holds {6 * MIB} bytes of other requests" in message
    assert f"this one needs {5 * MIB}" in message


def test_a_request_alone_is_served_whatever_its_size() -> None:
    budget = DecodeBudget(limit_bytes=MIB)
    with budget.reservation() as alone:
        alone.grow(3 * MIB)
        alone.grow(3 * MIB)
        with budget.reservation() as other, pytest.raises(errors.ServerBusyError):
            other.grow(1)
    assert budget.in_use == 0


def test_a_refusal_is_a_rate_limit_on_the_wire() -> None:
    from meshserve.protocol import status

    busy = errors.ServerBusyError("busy", retry_after_s=1)
    assert status.http_status(busy) == 429
    assert status.grpc_code(busy).name == "RESOURCE_EXHAUSTED"


def test_zero_is_unlimited() -> None:
    budget = DecodeBudget(limit_bytes=0)
    with budget.reservation() as first, budget.reservation() as second:
        first.grow(10**12)
        second.grow(10**12)


async def test_rest_refuses_a_body_the_budget_has_no_room_for_and_serves_small_ones() -> None:
    budget = DecodeBudget(limit_bytes=64 * 1024)
    app = create_rest_app(backend=FakeBackend(), budget=budget)
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a" * 40_000]}]}
    async with (
        RestServer(app=app, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client,
    ):
        url = "/v2/models/double/infer"
        with budget.reservation() as other:  # another request holds 32 KiB
            other.grow(32 * 1024)
            refused = await client.post(url, json=body)
            assert refused.status_code == 429
            assert "server.maxInflightDecodeBytes" in refused.json()["error"]
            small = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
            assert (await client.post(url, json=small)).status_code == 200
            # Chunked (no Content-Length): counted as it arrives.
            payload = orjson.dumps(body)
            chunks = [payload[i : i + 8192] for i in range(0, len(payload), 8192)]
            streamed = await client.post(url, content=_stream(chunks))
            assert streamed.status_code == 429
        # Alone, the large body is served; nothing stays reserved.
        assert (await client.post(url, json=body)).status_code == 200
        assert budget.in_use == 0


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_large_bodies_are_decoded_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_on: list[threading.Thread] = []
    real = codecs.request_from_json

    def spy(*args: object, **kwargs: object) -> object:
        decoded_on.append(threading.current_thread())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(codecs, "request_from_json", spy)
    app = create_rest_app(backend=FakeBackend(), offload_bytes=1000)
    small = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    large = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a" * 2000]}]}
    async with (
        RestServer(app=app, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=30) as client,
    ):
        for body in (small, large):
            assert (await client.post("/v2/models/double/infer", json=body)).status_code == 200
    loop_thread = threading.current_thread()
    assert decoded_on[0] is loop_thread
    assert decoded_on[1] is not loop_thread
