"""gRPC health and reflection, and the HTTP probes, on a real `meshserve up`:
reflection lists and describes the services without .proto files (what
``grpcurl list`` / ``describe`` do), health answers SERVING while the
instance serves and NOT_SERVING from the moment it drains, before its port
closes; reflection can be turned off."""

from __future__ import annotations

import json
import pathlib
import queue
import signal
import threading
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration._introspection import describe, health_status, list_services
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(240)

SERVICES = {
    "inference.GRPCInferenceService",
    "mmesh.ModelMesh",
    "meshserve.admin.v1.Admin",
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    # With a namespace port (0: a free one), which serves v2 inference only.
    env = {"MESHSERVE_SERVER__NAMESPACE_PORTS": json.dumps({"team-a": 0})}
    with run_up(tmp_path_factory.mktemp("health") / "data", env=env) as running:
        yield running


@pytest.fixture
def channel(up: Up) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(up.grpc) as channel:
        yield channel


def test_reflection_lists_the_services(channel: grpc.Channel) -> None:
    assert list_services(channel) == SERVICES


def test_reflection_describes_the_inference_service(channel: grpc.Channel) -> None:
    methods = describe(channel, "inference.GRPCInferenceService")
    assert methods["ModelInfer"] == ("inference.ModelInferRequest", "inference.ModelInferResponse")
    assert set(methods) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }
    assert "registerModel" in describe(channel, "mmesh.ModelMesh")


@pytest.mark.parametrize("service", ["", "inference.GRPCInferenceService", "mmesh.ModelMesh"])
def test_health_is_serving_for_the_server_and_each_service(
    channel: grpc.Channel, service: str
) -> None:
    assert health_status(channel, service) == "SERVING"


def test_health_of_an_unknown_service_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        health_status(channel, "no.Such")
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_namespace_port_has_health_and_reflection_for_what_it_serves(up: Up) -> None:
    endpoints = json.loads((up.data_dir / "endpoints.json").read_text())
    with grpc.insecure_channel(endpoints["namespaces"]["team-a"]) as channel:
        assert health_status(channel) == "SERVING"
        assert health_status(channel, "inference.GRPCInferenceService") == "SERVING"
        with pytest.raises(grpc.RpcError) as raised:
            health_status(channel, "mmesh.ModelMesh")
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        assert list_services(channel) == SERVICES - {"mmesh.ModelMesh", "meshserve.admin.v1.Admin"}


def test_http_probes(up: Up) -> None:
    with httpx.Client(base_url=up.rest_url, timeout=10) as http:
        assert http.get("/live").json() == {"live": True}
        ready = http.get("/ready")
        assert (ready.status_code, ready.json()) == (200, {"ready": True})


def _watch(channel: grpc.Channel, seen: queue.Queue[str]) -> None:
    """Put each status the Watch stream sends into ``seen``, then "end"."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        for reply in stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=120):
            seen.put(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError as exc:
        seen.put(f"end: {exc.code().name}")
    else:
        seen.put("end")


def test_health_watch_reports_not_serving_while_draining(tmp_path: pathlib.Path) -> None:
    with run_up(tmp_path / "data") as up, grpc.insecure_channel(up.grpc) as channel:
        seen: queue.Queue[str] = queue.Queue()
        watcher = threading.Thread(target=_watch, args=(channel, seen), daemon=True)
        watcher.start()
        assert seen.get(timeout=30) == "SERVING"
        up.proc.send_signal(signal.SIGTERM)
        # Sent on the stream the port still serves: before it closes.
        assert seen.get(timeout=60) == "NOT_SERVING", up.log_tail()
        assert seen.get(timeout=60).startswith("end"), up.log_tail()
        watcher.join(10)
        assert up.proc.wait(60) == 0, up.log_tail()


def test_reflection_off_by_setting(tmp_path: pathlib.Path) -> None:
    env = {"MESHSERVE_SERVER__GRPC_REFLECTION": "false"}
    with run_up(tmp_path / "data", env=env) as up, grpc.insecure_channel(up.grpc) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            list_services(channel)
        assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert health_status(channel) == "SERVING"
