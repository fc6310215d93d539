"""The /metrics endpoint, scraped over a real loopback socket."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshserve.metrics import Metrics
from meshserve.server._metrics_http import MetricsServer, start_metrics_server


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def server(metrics: Metrics) -> AsyncIterator[MetricsServer]:
    server = await start_metrics_server(metrics, host="127.0.0.1", port=0)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def client(server: MetricsServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        yield client


async def test_scrape_returns_current_metrics(
    metrics: Metrics, server: MetricsServer, client: httpx.AsyncClient
) -> None:
    assert server.port > 0
    metrics.load_failed()
    first = await client.get("/metrics")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in text_string_to_metric_families(first.text)}
    assert families["modelmesh_loadmodel_failure"].samples[0].value == 1
    assert "modelmesh_api_request_milliseconds" in families

    metrics.load_failed()
    second = await client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(second.text)}
    assert families["modelmesh_loadmodel_failure"].samples[0].value == 2


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/extra", "/v2/health/ready"])
async def test_other_paths_are_not_found(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404


async def test_only_get_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post("/metrics", content=b"")
    assert response.status_code == 405


async def test_stop_closes_the_port(metrics: Metrics) -> None:
    async with MetricsServer(metrics, host="127.0.0.1", port=0) as server:
        port = server.port
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/metrics")).status_code == 200
    await server.stop()  # a second stop is harmless
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/metrics")
