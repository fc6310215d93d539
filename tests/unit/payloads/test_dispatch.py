"""Payload processors against a real local HTTP endpoint: what it receives,
and what is dropped and counted when it cannot keep up."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging

import pytest

from meshserve.metrics import Metrics
from meshserve.payloads import Payload, PayloadKind, PayloadProcessors, parse_processors
from tests._event_sink import event_sink

METHOD = "inference.GRPCInferenceService/ModelInfer"
TENSOR = b"\x01tensor"


def _payload(kind: PayloadKind, *, id: str = "i1", data: bytes = TENSOR) -> Payload:
    return Payload(
        kind=kind,
        id=id,
        model_id="fraud__isvc-1",
        vmodel_id="fraud",
        method=METHOD,
        data=data,
        status="OK" if kind is PayloadKind.RESPONSE else "",
    )


def _processors(uris: str, metrics: Metrics, *, queue_size: int = 16) -> PayloadProcessors:
    return PayloadProcessors(
        specs=parse_processors(uris),
        queue_size=queue_size,
        timeout_s=5.0,
        source="/meshserve/instances/i-1",
        metrics=metrics,
    )


def _dropped(metrics: Metrics, processor: str, reason: str) -> float:
    text = metrics.render().decode()
    line = f'meshserve_payloads_dropped_total{{processor="{processor}",reason="{reason}"}} '
    found = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
    return found[0] if found else 0.0


async def _until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_remote_processor_gets_cloudevents_with_upstreams_body() -> None:
    with event_sink() as sink:
        async with _processors(sink.url, Metrics()) as processors:
            assert processors.wants("fraud__isvc-1", "fraud", METHOD)
            processors.offer(_payload(PayloadKind.REQUEST))
            # A response that came decoded: serialized only when sent.
            processors.offer(
                dataclasses.replace(_payload(PayloadKind.RESPONSE), data=lambda: b"\x02answer")
            )
            await asyncio.to_thread(sink.wait_for, lambda events: len(events) == 2)
    request, response = sorted(sink.events(), key=lambda e: e.body["kind"])
    assert request.path == "/events"
    assert request.body == {
        "id": "i1",
        "modelid": "fraud__isvc-1",
        "vmodelid": "fraud",
        "method": METHOD,
        "kind": "request",
        "status": "",
        "data": base64.b64encode(TENSOR).decode(),
    }
    assert request.headers["content-type"] == "application/json"
    assert request.headers["ce-specversion"] == "1.0"
    assert request.headers["ce-type"] == "org.kubeflow.serving.inference.request"
    assert request.headers["ce-id"] == "i1-request"
    assert request.headers["ce-source"] == "/meshserve/instances/i-1"
    assert request.headers["ce-modelid"] == "fraud__isvc-1"
    assert request.headers["ce-vmodelid"] == "fraud"
    assert "authorization" not in request.headers
    assert response.headers["ce-type"] == "org.kubeflow.serving.inference.response"
    assert response.body["status"] == "OK"
    assert base64.b64decode(response.body["data"]) == b"\x02answer"


async def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    metrics = Metrics()
    with event_sink() as sink:
        sink.release.clear()  # the endpoint takes nothing until told
        async with _processors(sink.url, metrics, queue_size=2) as processors:
            processors.offer(_payload(PayloadKind.REQUEST, id="first"))
            await asyncio.sleep(0.2)  # the first is being sent (and stuck)
            for n in range(5):
                processors.offer(_payload(PayloadKind.REQUEST, id=f"more-{n}"))
            # Two wait in the queue; three found it full.
            assert _dropped(metrics, "remote", "queue_full") == 3
            sink.release.set()
            await asyncio.to_thread(sink.wait_for, lambda events: len(events) == 3)
    assert [e.body["id"] for e in sink.events()] == ["first", "more-0", "more-1"]


async def test_an_endpoint_that_is_down_is_counted_as_failed() -> None:
    metrics = Metrics()
    with event_sink() as sink:
        url = sink.url
    # The sink is gone: nothing listens there any more.
    async with _processors(url, metrics) as processors:
        processors.offer(_payload(PayloadKind.REQUEST))
        await _until(lambda: _dropped(metrics, "remote", "failed") == 1)


async def test_logger_writes_one_line_per_payload(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="meshserve.payloads")
    async with _processors("logger://", Metrics()) as processors:
        processors.offer(_payload(PayloadKind.REQUEST))
        await _until(lambda: any("payload request" in r.message for r in caplog.records))
    (line,) = [r.getMessage() for r in caplog.records if r.name == "meshserve.payloads"]
    assert "id=i1 modelId=fraud__isvc-1 vModelId=fraud" in line
    assert f"method={METHOD}" in line
    assert "bytes=7 data=" + base64.b64encode(TENSOR).decode() in line


async def test_a_filtered_processor_takes_only_its_model() -> None:
    metrics = Metrics()
    async with _processors("logger:///?other-model", metrics) as processors:
        assert not processors.wants("fraud__isvc-1", "fraud", METHOD)
        assert processors.wants("other-model", None, METHOD)
