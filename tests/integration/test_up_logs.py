"""Structured logs from a real `meshserve up` (``log.format: json``): every
line of its log is one JSON event, and a request's lines carry the
request's fields (model id, vmodel id, instance, request id) without any
code passing them along."""

from __future__ import annotations

import json
import pathlib

import httpx
import pytest

from meshserve.protocol._pb import model_mesh_pb2 as mm
from tests.integration._mesh import make_model
from tests.integration._resources import infer_result
from tests.integration._up import Registration, run_up, wait_until

pytestmark = pytest.mark.timeout(240)

EVENT_FIELDS = {"time", "level", "logger", "message", "instance"}
REQUEST_FIELDS = {"model_id", "vmodel_id", "request_id"}


def _events(log: pathlib.Path) -> list[dict[str, object]]:
    """Every line of ``log`` as a JSON event (fails on a line that is not one)."""
    events = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(event, dict), line
        events.append(event)
    return events


def test_json_logs_carry_each_requests_fields(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    env = {"MESHSERVE_LOG__FORMAT": "json", "MESHSERVE_SERVER__ACCESS_LOGGING": "true"}
    with run_up(
        tmp_path / "data", register=[Registration(name="m", type="sklearn", path=model)], env=env
    ) as up:
        up.management.mesh.setVModel(
            mm.SetVModelRequest(vModelId="v", targetModelId="m", owner="ops"), timeout=30
        )
        infer_result(up.grpc, "v", headers={"x-request-id": "grpc-req-1"})
        rest = httpx.post(
            f"{up.rest_url}/v2/models/m/infer",
            json={
                "inputs": [
                    {"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}
                ]
            },
            headers={"x-request-id": "rest-req-2"},
            timeout=30,
        )
        assert rest.status_code == 200, rest.text

        def access(request_id: str) -> dict[str, object] | None:
            by_id = [e for e in _events(up.log) if e.get("request_id") == request_id]
            return next((e for e in by_id if e["logger"] == "meshserve.access"), None)

        grpc_line = wait_until(lambda: access("grpc-req-1"), timeout=10, what="gRPC access line")
        rest_line = wait_until(lambda: access("rest-req-2"), timeout=10, what="REST access line")
        events = _events(up.log)

    assert grpc_line.keys() >= EVENT_FIELDS | REQUEST_FIELDS, grpc_line
    assert (grpc_line["model_id"], grpc_line["vmodel_id"]) == ("m", "v")
    assert (grpc_line["protocol"], grpc_line["code"], grpc_line["level"]) == ("grpc", "OK", "INFO")
    assert isinstance(grpc_line["latency_ms"], float)
    assert rest_line.keys() >= EVENT_FIELDS | {"model_id", "request_id"}, rest_line
    assert (rest_line["model_id"], rest_line["protocol"], rest_line["code"]) == ("m", "rest", 200)
    instance = grpc_line["instance"]
    assert isinstance(instance, str) and instance
    # The lines of the instance outside any request (start, load, stop): the
    # common fields, this instance's id, and no request's fields.
    served = [e for e in events if e.get("instance") == instance]
    quiet = [e for e in served if "request_id" not in e]
    assert quiet and all(e.keys() >= EVENT_FIELDS for e in quiet)
    # The load the first request caused ran in its context: its line names
    # the request and the model too.
    loaded = [e for e in served if e["logger"] == "meshserve.mesh._cache"]
    assert loaded and loaded[0]["request_id"] == "grpc-req-1", loaded
    assert loaded[0]["model_id"] == "m"
    assert all(str(e["time"]).endswith("+00:00") for e in events)
