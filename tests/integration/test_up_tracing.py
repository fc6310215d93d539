"""Tracing across a forwarded hop, received by a real OTLP endpoint."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from tests._otlp import OtlpReceiver, ReceivedSpan, otlp_receiver
from tests.integration._credentials import credential
from tests.integration._mesh import make_model
from tests.integration._up import Registration, run_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SERVER, CLIENT = 2, 3
RECEIVE = "inference.GRPCInferenceService/ModelInfer"


def _tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        "MESHSERVE_TRACING__ENABLED": "true",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "mesh-under-test",
        # Batches leave every 100 ms rather than 5 s: the test waits less.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def _infer(address: str, model: str, *, headers: dict[str, str] | None = None) -> None:
    client = triton_grpc.InferenceServerClient(url=address)
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        result = client.infer(model, [tensor], client_timeout=60, headers=headers)
        assert result.as_numpy("predict") is not None
    finally:
        client.close()


def _rest_infer(address: str, model: str, *, traceparent: str) -> None:
    client = triton_http.InferenceServerClient(url=address)
    try:
        tensor = triton_http.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32), binary_data=False)
        result = client.infer(model, [tensor], headers={"traceparent": traceparent})
        assert result.as_numpy("predict") is not None
    finally:
        client.close()


def _forwarded_trace(spans: list[ReceivedSpan]) -> list[ReceivedSpan] | None:
    """The spans of the trace that holds a forward and an infer, if any."""
    for forward in (s for s in spans if s.name == "meshserve.forward"):
        trace = [s for s in spans if s.trace_id == forward.trace_id]
        if any(s.name == "meshserve.infer" for s in trace):
            return trace
    return None


def _one(trace: list[ReceivedSpan], name: str, **attributes: object) -> ReceivedSpan:
    found = [
        s
        for s in trace
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, (name, attributes, trace)
    return found[0]


def test_a_forwarded_request_is_one_trace_across_both_instances(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    with otlp_receiver() as receiver:
        with run_up(
            tmp_path / "data",
            register=[Registration(name="traced", type="sklearn", path=model, load_now=True)],
            args=["--instances", "2"],
            env=_tracing_env(receiver),
        ) as up:
            instances = json.loads((up.data_dir / "endpoints.json").read_text())["instances"]
            assert len(instances) == 2
            # One copy: whichever instance does not hold it forwards.
            for entry in instances:
                _infer(entry["grpc"], "traced")
            spans = receiver.wait_for(lambda got: _forwarded_trace(got) is not None)
        trace = _forwarded_trace(spans)
        assert trace is not None
        ids = {entry["id"] for entry in instances}

        forward = _one(trace, "meshserve.forward")
        assert forward.kind == CLIENT
        route_a = next(s for s in trace if s.span_id == forward.parent_span_id)
        assert route_a.name == "meshserve.route"
        receive_a = next(s for s in trace if s.span_id == route_a.parent_span_id)
        assert receive_a.name == RECEIVE and receive_a.kind == SERVER
        assert receive_a.parent_span_id == ""  # the client sent no trace context
        instance_a = route_a.attributes["meshserve.instance_id"]
        instance_b = forward.attributes["meshserve.peer.instance_id"]
        assert {instance_a, instance_b} == ids

        # The hop: B's receive is the child of A's forward.
        receive_b = next(s for s in trace if s.parent_span_id == forward.span_id)
        assert receive_b.name == RECEIVE and receive_b.kind == SERVER
        route_b = next(s for s in trace if s.parent_span_id == receive_b.span_id)
        assert route_b.name == "meshserve.route"
        assert route_b.attributes["meshserve.hops"] == 1
        infer = _one(trace, "meshserve.infer")
        assert infer.parent_span_id == route_b.span_id

        for span in (receive_a, receive_b):
            assert span.attributes["rpc.system"] == "grpc"
            assert span.attributes["rpc.service"] == "inference.GRPCInferenceService"
            assert span.attributes["rpc.method"] == "ModelInfer"
        for span in (receive_a, route_a, forward, receive_b, route_b, infer):
            assert span.attributes["meshserve.model_id"] == "traced"
            assert span.resource["service.name"] == "mesh-under-test"
        assert receive_a.resource["service.instance.id"] == instance_a
        assert receive_b.resource["service.instance.id"] == instance_b
        assert route_b.attributes["meshserve.instance_id"] == instance_b
        assert infer.attributes["meshserve.instance_id"] == instance_b
        assert forward.attributes["server.address"] == next(
            entry["internal"] for entry in instances if entry["id"] == instance_b
        )


CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
REST_TRACE = "5bf92f3577b34da6a3ce929d0e0e4737"
COLLECTOR_KEY = "collector-key-for-the-instance-only"


def test_the_trace_goes_from_the_client_into_the_runtime_process_without_credentials(
    tmp_path: pathlib.Path,
) -> None:
    model = make_model(tmp_path / "m.skops")
    with otlp_receiver() as receiver:
        env = {
            **_tracing_env(receiver),
            # A collector's credential: the instance sends it, the runtime
            # process (which may run a hostile artifact) never sees it.
            "OTEL_EXPORTER_OTLP_HEADERS": f"x-collector-key={credential(COLLECTOR_KEY)}",
            # The child keeps our user (the interpreter may be unreadable to
            # `nobody`); tests/integration/test_privileges.py covers the drop.
            "MESHSERVE_RUNTIME__RUN_AS_USER": "",
        }
        with run_up(
            tmp_path / "data",
            register=[Registration(name="in-child", type="sklearn", path=model)],
            args=["--runtime-host", "process"],
            env=env,
        ) as up:
            _infer(
                up.grpc, "in-child", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
            )
            _rest_infer(up.rest, "in-child", traceparent=f"00-{REST_TRACE}-{CLIENT_SPAN}-01")
            spans = receiver.wait_for(
                lambda got: sum(s.name == "meshserve.runtime.infer" for s in got) == 2
            )
        trace = [s for s in spans if s.trace_id == CLIENT_TRACE]
        receive = _one(trace, RECEIVE)
        assert receive.parent_span_id == CLIENT_SPAN  # the client's span is the parent
        route = _one(trace, "meshserve.route")
        assert route.parent_span_id == receive.span_id
        load = _one(trace, "meshserve.load")
        assert load.parent_span_id == route.span_id
        infer = _one(trace, "meshserve.infer")
        assert infer.parent_span_id == route.span_id
        in_child = _one(trace, "meshserve.runtime.infer")
        assert in_child.parent_span_id == infer.span_id
        assert in_child.kind == SERVER
        assert in_child.attributes["meshserve.model_id"] == "in-child"
        # Exported by the runtime process itself, a resource of its own.
        assert in_child.resource["service.instance.id"] != receive.resource["service.instance.id"]
        assert receive.headers.get("x-collector-key") == COLLECTOR_KEY

        # REST: the same chain under an HTTP server span.
        rest = [s for s in spans if s.trace_id == REST_TRACE]
        receive_rest = _one(rest, "POST /v2/models/{name}/infer")
        assert receive_rest.parent_span_id == CLIENT_SPAN and receive_rest.kind == SERVER
        assert receive_rest.attributes["http.request.method"] == "POST"
        assert receive_rest.attributes["http.route"] == "/v2/models/{name}/infer"
        assert receive_rest.attributes["meshserve.model_id"] == "in-child"
        route_rest = _one(rest, "meshserve.route")
        assert route_rest.parent_span_id == receive_rest.span_id
        infer_rest = _one(rest, "meshserve.infer")
        assert _one(rest, "meshserve.runtime.infer").parent_span_id == infer_rest.span_id
        assert "x-collector-key" not in in_child.headers
