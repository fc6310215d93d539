"""Payload processors under `meshserve up`: a real local HTTP endpoint gets
each inference's request and response; a stuck one costs payloads, never
answers."""

from __future__ import annotations

import base64
import json
import pathlib

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from tests._event_sink import ReceivedEvent, event_sink
from tests.integration._mesh import make_model
from tests.integration._up import TABULAR_INPUT, Registration, metric_total, run_up

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROWS = np.ones((1, 4), dtype=np.float32)


def _grpc_infer(address: str, model: str) -> None:
    client = triton_grpc.InferenceServerClient(url=address)
    try:
        tensor = triton_grpc.InferInput(TABULAR_INPUT, [1, 4], "FP32")
        tensor.set_data_from_numpy(ROWS)
        assert client.infer(model, [tensor], client_timeout=60).as_numpy("predict") is not None
    finally:
        client.close()


def _rest_infer(address: str, model: str) -> None:
    client = triton_http.InferenceServerClient(url=address)
    try:
        tensor = triton_http.InferInput(TABULAR_INPUT, [1, 4], "FP32")
        tensor.set_data_from_numpy(ROWS, binary_data=False)
        assert client.infer(model, [tensor]).as_numpy("predict") is not None
    finally:
        client.close()


def _data(event: ReceivedEvent) -> bytes:
    return base64.b64decode(event.body["data"])


def test_an_endpoint_gets_the_request_and_response_of_each_inference(
    tmp_path: pathlib.Path,
) -> None:
    model = make_model(tmp_path / "m.skops")
    with event_sink() as sink:
        env = {"MESHSERVE_PAYLOADS__PROCESSORS": f"logger:// {sink.url}"}
        with run_up(
            tmp_path / "data",
            register=[Registration(name="paid", type="sklearn", path=model)],
            env=env,
        ) as up:
            _grpc_infer(up.grpc, "paid")
            _rest_infer(up.rest, "paid")
            events = sink.wait_for(lambda got: len(got) == 4)
            log = up.log.read_text(errors="replace")
    by_inference: dict[str, dict[str, ReceivedEvent]] = {}
    for event in events:
        assert event.body["modelid"] == "paid"
        assert event.headers["ce-specversion"] == "1.0"
        assert event.headers["ce-type"] == f"org.kubeflow.serving.inference.{event.body['kind']}"
        by_inference.setdefault(event.body["id"], {})[event.body["kind"]] = event
    assert len(by_inference) == 2  # two inferences, each a request and a response
    for pair in by_inference.values():
        request = v2.ModelInferRequest.FromString(_data(pair["request"]))
        assert request.model_name == "paid"
        assert request.inputs[0].name == TABULAR_INPUT
        assert list(request.inputs[0].shape) == [1, 4]
        response = v2.ModelInferResponse.FromString(_data(pair["response"]))
        assert pair["response"].body["status"] == "OK"
        assert "predict" in [output.name for output in response.outputs]
    # logger:// too: a line per payload in the instance's log.
    assert log.count("payload request id=") == 2
    assert log.count("payload response id=") == 2


def test_a_stuck_endpoint_costs_payloads_counted_never_answers(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    with event_sink() as sink:
        sink.release.clear()  # takes no payload until the end
        env = {
            "MESHSERVE_PAYLOADS__PROCESSORS": sink.url,
            "MESHSERVE_PAYLOADS__QUEUE_SIZE": "2",
            # The stuck POST outlasts the test: nothing frees the queue.
            "MESHSERVE_PAYLOADS__TIMEOUT_S": "120",
        }
        with run_up(
            tmp_path / "data",
            register=[Registration(name="paid", type="sklearn", path=model, load_now=True)],
            env=env,
        ) as up:
            for _ in range(10):
                _grpc_infer(up.grpc, "paid")  # every one answered
            metrics = json.loads((up.data_dir / "endpoints.json").read_text())["instances"][0][
                "metrics"
            ]
            # 20 payloads: one in flight, two queued, the rest dropped.
            assert metric_total(metrics, "meshserve_payloads_dropped_total") == 17
            sink.release.set()
            sink.wait_for(lambda got: len(got) == 3)
