"""The v2 REST front end, driven over a real socket by httpx and tritonclient.

One server per module runs in a thread of its own (tritonclient.http is
synchronous and gevent-based, so it cannot share the server's event loop);
the lifecycle tests at the end start their own servers in the test's loop.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from meshserve.errors import (
    InferenceError,
    InvalidRequestError,
    ModelNotFoundError,
    TensorError,
)
from meshserve.protocol import codecs
from meshserve.protocol._pb import grpc_predict_v2_pb2 as pb
from meshserve.protocol.datatypes import Datatype
from meshserve.protocol.inference import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    Tensor,
    TensorMetadata,
)
from meshserve.protocol.routing import NO_HEADERS, RoutingHeaders, ServerInfo
from meshserve.server._rest import RestServer, create_rest_app

LIMIT = 64 * 1024
SERVER_INFO = ServerInfo(name="meshserve", version="9.9.9", extensions=("binary_tensor_data",))

# ---------------------------------------------------------------- the fake backend


@dataclass
class FakeBackend:
    """A small instance: every model doubles its inputs (numbers times two,
    bytes repeated) into outputs named ``<input>_x2``; "broken" and "picky"
    raise domain errors, "crashy" raises something unexpected."""

    models: set[str] = field(
        default_factory=lambda: {
            *("double-v1", "sleepy", "broken", "picky", "crashy", "modèle-ü"),
            "team-a/double-v1",
        }
    )
    vmodels: dict[str, str] = field(
        default_factory=lambda: {"double": "double-v1", "team-a/double": "team-a/double-v1"}
    )
    loaded: set[str] = field(default_factory=lambda: {"double-v1", "modèle-ü", "broken"})
    ready: bool = True
    requests: list[tuple[str, InferenceRequest]] = field(default_factory=list)

    def resolve(self, name: str, headers: RoutingHeaders) -> str:
        if headers.model_id is not None and headers.vmodel_id is not None:
            raise InvalidRequestError("give mm-model-id or mm-vmodel-id, not both")
        if headers.model_id is not None:
            return self._model(headers.model_id)
        if headers.vmodel_id is not None:
            if headers.vmodel_id not in self.vmodels:
                raise ModelNotFoundError(f"no vmodel {headers.vmodel_id!r}")
            return self.vmodels[headers.vmodel_id]
        return self.vmodels.get(name) or self._model(name)

    def _model(self, model_id: str) -> str:
        if model_id not in self.models:
            raise ModelNotFoundError(f"no model {model_id!r}")
        return model_id

    async def infer(
        self, model_id: str, request: InferenceRequest, *, headers: RoutingHeaders = NO_HEADERS
    ) -> InferenceResponse:
        self.requests.append((model_id, request))
        if model_id == "broken":
            raise InferenceError("model 'broken' raised ValueError: bad weights")
        if model_id == "picky":
            raise TensorError(request.inputs[0].name, "must hold positive values")
        if model_id == "crashy":
            raise RuntimeError("boom")
        self.loaded.add(model_id)
        wanted = {out.name for out in request.outputs}
        outputs = [
            Tensor(f"{t.name}_x2", t.datatype, _doubled(t))
            for t in request.inputs
            if not wanted or f"{t.name}_x2" in wanted
        ]
        return InferenceResponse(
            model_name=model_id, model_version=request.model_version, outputs=outputs
        )

    async def infer_grpc(
        self, model_id: str, body: bytes, *, headers: RoutingHeaders = NO_HEADERS
    ) -> bytes:
        request = codecs.request_from_proto(pb.ModelInferRequest.FromString(body))
        response = await self.infer(model_id, request)
        serialized: bytes = codecs.response_to_proto(response).SerializeToString()
        return serialized

    async def model_metadata(
        self, model_id: str, headers: RoutingHeaders = NO_HEADERS
    ) -> ModelMetadata:
        return ModelMetadata(
            name=model_id,
            platform="fake_numpy",
            versions=("1",),
            inputs=(TensorMetadata("x", Datatype.FP32, (-1, 3)),),
            outputs=(TensorMetadata("x_x2", Datatype.FP32, (-1, 3)),),
        )

    def model_ready(self, model_id: str) -> bool:
        return model_id in self.loaded

    def server_ready(self) -> bool:
        return self.ready

    def server_info(self) -> ServerInfo:
        return SERVER_INFO


def _doubled(tensor: Tensor) -> np.ndarray:
    if tensor.datatype is Datatype.BYTES:
        return np.array([b * 2 for b in tensor.data.flat], dtype=np.object_).reshape(
            tensor.data.shape
        )
    if tensor.datatype is Datatype.BOOL:
        return tensor.data.copy()
    doubled: np.ndarray = tensor.data * tensor.data.dtype.type(2)
    return doubled


# ---------------------------------------------------------------- a server in a thread


class _ServerThread:
    """Runs a RestServer in a thread with its own event loop."""

    def __init__(self, backend: FakeBackend) -> None:
        self._app = create_rest_app(backend=backend, max_message_bytes=LIMIT)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="rest-test-server")
        self.port = 0

    def __enter__(self) -> str:
        self._thread.start()
        if not self._started.wait(10) or self._error is not None:
            raise RuntimeError(f"the test server did not start: {self._error!r}")
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RestServer(app=self._app, host="127.0.0.1", port=0) as server:
            self.port = server.port
            self._started.set()
            await self._stop.wait()


@dataclass
class Served:
    address: str
    backend: FakeBackend


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    backend = FakeBackend()
    with _ServerThread(backend) as address:
        yield Served(address, backend)


@pytest.fixture
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://{served.address}", timeout=10) as client:
        yield client


@pytest.fixture
def triton(served: Served) -> Iterator[triton_http.InferenceServerClient]:
    client = triton_http.InferenceServerClient(served.address, network_timeout=10)
    yield client
    client.close()


def infer_body(data: list[float], *, shape: list[int] | None = None, **extra: object) -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": shape or [len(data)], "data": data}
    return orjson.dumps({"inputs": [tensor], **extra})


def assert_still_serving(http: httpx.Client) -> None:
    """A good request on the same client (and connection, when it was kept)."""
    response = http.post("/v2/models/double/infer", content=infer_body([1.5, -2.0]))
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [3.0, -4.0]


def assert_error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    for fragment in fragments:
        assert fragment in body["error"]


# ---------------------------------------------------------------- health and metadata


# The v2 routes, and the same at the paths Kubernetes probes usually use.
PROBES = pytest.mark.parametrize(
    ("live_path", "ready_path"), [("/v2/health/live", "/v2/health/ready"), ("/live", "/ready")]
)


@PROBES
def test_liveness_and_readiness(http: httpx.Client, live_path: str, ready_path: str) -> None:
    live = http.get(live_path)
    assert (live.status_code, live.json()) == (200, {"live": True})
    ready = http.get(ready_path)
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


@pytest.fixture
def not_ready(served: Served) -> Iterator[None]:
    served.backend.ready = False
    yield
    served.backend.ready = True


@PROBES
@pytest.mark.usefixtures("not_ready")
def test_readiness_is_503_when_the_backend_is_not_ready(
    http: httpx.Client, triton: triton_http.InferenceServerClient, live_path: str, ready_path: str
) -> None:
    response = http.get(ready_path)
    assert (response.status_code, response.json()) == (503, {"ready": False})
    assert http.get(live_path).status_code == 200
    assert triton.is_server_ready() is False
    assert triton.is_server_live() is True


def test_tritonclient_health_and_server_metadata(triton: triton_http.InferenceServerClient) -> None:
    assert triton.is_server_live() is True
    assert triton.is_server_ready() is True
    assert triton.get_server_metadata() == {
        "name": "meshserve",
        "version": "9.9.9",
        "extensions": ["binary_tensor_data"],
    }


def test_model_metadata_names_the_concrete_model(
    http: httpx.Client, triton: triton_http.InferenceServerClient
) -> None:
    expected = {
        "name": "double-v1",
        "versions": ["1"],
        "platform": "fake_numpy",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "x_x2", "datatype": "FP32", "shape": [-1, 3]}],
    }
    assert triton.get_model_metadata("double") == expected
    assert triton.get_model_metadata("double", model_version="1") == expected
    assert http.get("/v2/models/double-v1").json() == expected


@pytest.mark.parametrize(
    ("model", "status", "ready"),
    [("double", 200, True), ("sleepy", 400, False), ("nope", 404, None)],
)
def test_model_readiness(
    http: httpx.Client,
    triton: triton_http.InferenceServerClient,
    model: str,
    status: int,
    ready: bool | None,
) -> None:
    for path in (f"/v2/models/{model}/ready", f"/v2/models/{model}/versions/7/ready"):
        response = http.get(path)
        assert response.status_code == status
        if ready is None:
            assert_error(response, 404, "nope")
        else:
            assert response.json() == {"name": model.replace("double", "double-v1"), "ready": ready}
    assert triton.is_model_ready(model) is bool(ready)


# ---------------------------------------------------------------- inference with tritonclient


def _sample(datatype: Datatype) -> np.ndarray:
    if datatype is Datatype.BYTES:
        return np.array([b"ab", "héllo".encode(), b"", b"x" * 40], dtype=np.object_).reshape(2, 2)
    values = np.array([[0.5, -1.25, 3.0], [65504 / 4, -0.0, 7.75]])
    return values.astype(np.float16 if datatype is Datatype.FP16 else np.int32)


@pytest.mark.parametrize("datatype", [Datatype.FP16, Datatype.BYTES, Datatype.INT32], ids=str)
@pytest.mark.parametrize("binary_in", [True, False], ids=["bin-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["bin-out", "json-out"])
def test_tritonclient_infer(
    triton: triton_http.InferenceServerClient,
    served: Served,
    datatype: Datatype,
    binary_in: bool,
    binary_out: bool,
) -> None:
    array = _sample(datatype)
    first = triton_http.InferInput("x", list(array.shape), datatype.value)
    first.set_data_from_numpy(array, binary_data=binary_in)
    second = triton_http.InferInput("y", [1], "INT64")
    second.set_data_from_numpy(np.array([21], dtype=np.int64), binary_data=binary_in)
    outputs = [triton_http.InferRequestedOutput(f"{n}_x2", binary_data=binary_out) for n in "xy"]

    result = triton.infer("double", [first, second], outputs=outputs, request_id="req-42")

    got = result.as_numpy("x_x2")
    if datatype is Datatype.BYTES:
        # tritonclient gives JSON BYTES back as str, binary ones as bytes.
        got = np.vectorize(lambda v: v if isinstance(v, bytes) else v.encode(), otypes=[object])(
            got
        )
        assert got.tolist() == _doubled(Tensor("x", datatype, array)).tolist()
    else:
        assert got.dtype == array.dtype
        np.testing.assert_array_equal(got, array * 2)
    np.testing.assert_array_equal(result.as_numpy("y_x2"), [42])
    response = result.get_response()
    assert (response["model_name"], response["id"]) == ("double-v1", "req-42")
    model_id, request = served.backend.requests[-1]
    assert (model_id, request.model_name, request.id) == ("double-v1", "double-v1", "req-42")


def test_tritonclient_gzip_request_and_version(
    triton: triton_http.InferenceServerClient, served: Served
) -> None:
    array = np.arange(6, dtype=np.float16).reshape(2, 3)
    tensor = triton_http.InferInput("x", [2, 3], "FP16")
    tensor.set_data_from_numpy(array)
    result = triton.infer(
        "double", [tensor], model_version="3", request_compression_algorithm="gzip"
    )
    np.testing.assert_array_equal(result.as_numpy("x_x2"), array * 2)
    assert result.get_response()["model_version"] == "3"
    assert served.backend.requests[-1][1].model_version == "3"


@pytest.mark.parametrize(
    ("model", "status", "fragment"),
    [
        ("nope", "404", "no model 'nope'"),
        ("broken", "500", "bad weights"),
        ("picky", "400", "tensor 'x': must hold positive values"),
    ],
)
def test_tritonclient_sees_domain_errors(
    triton: triton_http.InferenceServerClient, model: str, status: str, fragment: str
) -> None:
    tensor = triton_http.InferInput("x", [1], "FP32")
    tensor.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(model, [tensor])
    assert caught.value.status() == status
    assert fragment in caught.value.message()
    assert triton.is_server_live()


# ---------------------------------------------------------------- inference with httpx


def test_json_infer_echoes_the_request_id(http: httpx.Client) -> None:
    response = http.post("/v2/models/double/infer", content=infer_body([1.0, 2.5], id="abc-1"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert codecs.INFERENCE_HEADER_CONTENT_LENGTH not in response.headers
    assert response.json() == {
        "model_name": "double-v1",
        "id": "abc-1",
        "outputs": [{"name": "x_x2", "datatype": "FP32", "shape": [2], "data": [2.0, 5.0]}],
    }


def test_binary_infer_answers_binary_outputs(http: httpx.Client) -> None:
    array = np.array([[1, -2, 3]], dtype=np.int16)
    request = InferenceRequest(
        model_name="",
        id="bin-7",
        inputs=[Tensor("x", Datatype.INT16, array)],
        parameters={"binary_data_output": True},
    )
    body, header_length = codecs.encode_binary_request(request)
    assert header_length is not None
    response = http.post(
        "/v2/models/double/infer",
        content=body,
        headers={codecs.INFERENCE_HEADER_CONTENT_LENGTH: str(header_length)},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    decoded = codecs.decode_binary_response(
        response.content,
        json_length=int(response.headers[codecs.INFERENCE_HEADER_CONTENT_LENGTH]),
    )
    assert (decoded.model_name, decoded.id) == ("double-v1", "bin-7")
    np.testing.assert_array_equal(decoded.outputs[0].data, array * 2)


def _b64(text: str, *, padded: bool = True) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


@pytest.mark.parametrize(
    ("headers", "model_id"),
    [
        ({"mm-model-id": "double-v1"}, "double-v1"),
        ({"mm-vmodel-id": "double"}, "double-v1"),
        ({"mm-model-id-bin": _b64("modèle-ü")}, "modèle-ü"),
        ({"mm-model-id-bin": _b64("modèle-ü", padded=False)}, "modèle-ü"),
        ({"mm-vmodel-id-bin": _b64("double")}, "double-v1"),
        ({"mm-model-id": "double-v1", "mm-model-id-bin": _b64("double-v1")}, "double-v1"),
    ],
)
def test_routing_headers_win_over_the_url_name(
    http: httpx.Client, headers: dict[str, str], model_id: str
) -> None:
    response = http.post("/v2/models/sleepy/infer", content=infer_body([1.0]), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == model_id
    assert http.get("/v2/models/sleepy", headers=headers).json()["name"] == model_id
    assert http.get("/v2/models/sleepy/ready", headers=headers).json()["name"] == model_id


@pytest.mark.parametrize(
    ("prefix", "headers"),
    [
        ("/namespaces/team-a", {}),
        ("", {"mm-namespace": "team-a"}),
        ("/namespaces/team-a", {"mm-namespace": "team-a"}),
        ("", {"mm-namespace": "team-a", "mm-vmodel-id": "double"}),
    ],
)
def test_a_plain_name_in_a_selected_namespace(
    http: httpx.Client, prefix: str, headers: dict[str, str]
) -> None:
    path = f"{prefix}/v2/models/double"
    response = http.post(f"{path}/infer", content=infer_body([1.0]), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "team-a/double-v1"
    assert http.get(path, headers=headers).json()["name"] == "team-a/double-v1"
    assert http.get(f"{prefix}/v2/health/ready").json() == {"ready": True}
    # The same plain name with no namespace is another model.
    assert http.get("/v2/models/double").json()["name"] == "double-v1"


@pytest.mark.parametrize(
    ("path", "headers", "fragment"),
    [
        ("/namespaces/team-a/v2/models/double", {"mm-namespace": "team-b"}, "expected one"),
        ("/namespaces/Team_A/v2/models/double", {}, "is not a namespace name"),
        ("/v2/models/double", {"mm-namespace": "a/b"}, "is not a namespace name"),
    ],
)
def test_a_bad_namespace_selection_is_400(
    http: httpx.Client, path: str, headers: dict[str, str], fragment: str
) -> None:
    assert_error(http.get(path, headers=headers), 400, fragment)
    assert_still_serving(http)


def test_a_plain_name_missing_from_a_namespace_is_404(http: httpx.Client) -> None:
    assert_error(http.get("/namespaces/team-b/v2/models/double"), 404, "team-b/double")


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({"mm-model-id": "double-v1", "mm-vmodel-id": "double"}, "not both"),
        ({"mm-model-id-bin": "***"}, "mm-model-id-bin is not base64"),
        ({"mm-vmodel-id-bin": _b64("a"), "mm-vmodel-id": "b"}, "expected one id"),
    ],
)
def test_bad_routing_headers_are_400(
    http: httpx.Client, headers: dict[str, str], fragment: str
) -> None:
    response = http.post("/v2/models/double/infer", content=infer_body([1.0]), headers=headers)
    assert_error(response, 400, fragment)
    assert_still_serving(http)


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "fragments"),
    [
        ("/v2/models/double/infer", b"{not json", {}, 400, ["not valid JSON", "line 1"]),
        ("/v2/models/double/infer", b"[1, 2]", {}, 400, ["JSON list; expected an object"]),
        (
            "/v2/models/double/infer",
            infer_body([1.0, 2.0, 3.0], shape=[2, 2]),
            {},
            400,
            ["tensor 'x'", "3"],
        ),
        (
            "/v2/models/double/infer",
            infer_body([1.0]),
            {codecs.INFERENCE_HEADER_CONTENT_LENGTH: "many"},
            400,
            ["Inference-Header-Content-Length", "'many'"],
        ),
        (
            "/v2/models/double/infer",
            infer_body([1.0]),
            {"content-encoding": "br"},
            400,
            ["'br' is not supported"],
        ),
        ("/v2/models/double/infer", b"garbage", {"content-encoding": "gzip"}, 400, ["gzip"]),
        ("/v2/models/nope/infer", infer_body([1.0]), {}, 404, ["no model 'nope'"]),
        ("/v2/models/double/versions/2/infer", b"{}", {}, 400, ["'inputs' is missing"]),
        ("/v2/models/broken/infer", infer_body([1.0]), {}, 500, ["bad weights"]),
    ],
)
def test_infer_errors(
    http: httpx.Client,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    fragments: list[str],
) -> None:
    assert_error(http.post(path, content=body, headers=headers), status, *fragments)
    assert_still_serving(http)


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("GET", "/v2/models/double/config", 404, "no route for GET /v2/models/double/config"),
        ("GET", "/v1/models/double", 404, "no route"),
        ("POST", "/v2/health/live", 405, "allowed: "),
        ("GET", "/v2/models/double/infer", 405, "POST"),
        ("GET", "/v2/models/nope", 404, "no model 'nope'"),
    ],
)
def test_routing_errors(
    http: httpx.Client, method: str, path: str, status: int, fragment: str
) -> None:
    response = http.request(method, path)
    assert_error(response, status, fragment)
    if status == 405:
        assert response.headers["allow"]
    assert_still_serving(http)


def test_unexpected_errors_are_500_and_logged(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="meshserve.server.rest"):
        response = http.post("/v2/models/crashy/infer", content=infer_body([1.0]))
    assert_error(response, 500, "internal error: boom")
    [record] = [r for r in caplog.records if r.name == "meshserve.server.rest"]
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    assert "/v2/models/crashy/infer" in record.getMessage()
    assert_still_serving(http)


# ---------------------------------------------------------------- body limits


def _padded(size: int) -> bytes:
    """A valid infer body of exactly ``size`` bytes (JSON allows trailing spaces)."""
    body = infer_body([1.0])
    return body + b" " * (size - len(body))


def test_a_body_at_the_limit_is_accepted(http: httpx.Client) -> None:
    response = http.post("/v2/models/double/infer", content=_padded(LIMIT))
    assert response.status_code == 200, response.text


def test_an_oversized_body_with_content_length_is_413(http: httpx.Client) -> None:
    response = http.post("/v2/models/double/infer", content=_padded(LIMIT + 1))
    assert_error(response, 413, f"declares {LIMIT + 1} bytes", f"limit is {LIMIT} bytes")
    assert_still_serving(http)


def test_an_oversized_chunked_body_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        body = _padded(4 * LIMIT)
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    response = http.post("/v2/models/double/infer", content=chunks())
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, f"over {LIMIT} bytes", f"limit is {LIMIT} bytes")
    assert_still_serving(http)


def test_a_body_that_decompresses_past_the_limit_is_413(http: httpx.Client) -> None:
    body = gzip.compress(_padded(LIMIT + 100))
    assert len(body) < LIMIT
    response = http.post(
        "/v2/models/double/infer", content=body, headers={"content-encoding": "gzip"}
    )
    assert_error(response, 413, "decompresses to more than")
    assert_still_serving(http)


def test_an_oversized_body_awaiting_100_continue_is_refused_unsent(served: Served) -> None:
    host, port = served.address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        answer = b""
        while b"}" not in answer:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"declares 1000000000 bytes" in answer


# ---------------------------------------------------------------- the server's lifecycle


@pytest.fixture
async def app_server() -> AsyncIterator[RestServer]:
    app = create_rest_app(backend=FakeBackend())
    async with RestServer(app=app, host="127.0.0.1", port=0) as server:
        yield server


async def test_the_server_installs_no_signal_handlers() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    app = create_rest_app(backend=FakeBackend())
    async with RestServer(app=app, host="127.0.0.1", port=0) as server:
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/v2/health/live")).status_code == 200
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


async def test_the_server_binds_only_its_host_and_closes_on_exit(app_server: RestServer) -> None:
    port = app_server.port
    assert port > 0
    async with httpx.AsyncClient(timeout=5) as client:
        assert (await client.get(f"http://127.0.0.1:{port}/v2/health/live")).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.2:{port}/v2/health/live")
        await app_server.stop()
        await app_server.stop()  # a second stop is harmless
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/v2/health/live")


async def test_a_port_in_use_fails_start(app_server: RestServer) -> None:
    clash = RestServer(
        app=create_rest_app(backend=FakeBackend()), host="127.0.0.1", port=app_server.port
    )
    with pytest.raises(OSError):
        await clash.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = clash.port


async def test_a_server_starts_once(app_server: RestServer) -> None:
    with pytest.raises(RuntimeError, match="starts once"):
        await app_server.start()
