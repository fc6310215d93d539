"""Limits on a running `meshserve up`: request rate per credential (gRPC and
REST, recovering after the window), models per namespace, bytes per
namespace, and the counter of refusals; the byte budget of request bodies in
flight, bounded error messages, and slow clients (header and body timeouts,
connections per client). (The message size limit is
tests/integration/test_up_serving.py::test_oversized_request_is_resource_exhausted_or_413.)"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import pathlib
import select
import socket
import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.runtime import InProcessRuntime, ModelSpec
from meshserve.settings import RuntimeSettings
from tests.integration._mesh import make_model
from tests.integration._up import Registration, Up, run_up, wait_until

pytestmark = pytest.mark.timeout(180)

ALICE, BOB = "alice-token-1", "bob-token-2"
RATE = 0.5
"""Requests per second: one every 2 s, so a quick run of requests is sure
to outrun it whatever the machine's speed."""


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _rejected(up: Up, limit: str) -> float:
    endpoints = json.loads((up.data_dir / "endpoints.json").read_text())
    text = httpx.get(endpoints["instances"][0]["metrics"], timeout=10).text
    prefix = f'meshserve_limit_rejected_total{{limit="{limit}"}} '
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(lines[0].removeprefix(prefix)) if lines else 0.0


# ------------------------------------------------------------------ rate


@pytest.fixture(scope="module")
def rated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("rate")
    model = make_model(work / "m.skops")
    tokens = work / "tokens.yaml"
    tokens.write_text(
        "principals:\n"
        f"  - {{name: alice, tokenSha256: {_sha(ALICE)}, role: viewer, namespaces: ['*']}}\n"
        f"  - {{name: bob, tokenSha256: {_sha(BOB)}, role: viewer, namespaces: ['*']}}\n"
    )
    config = work / "config.yaml"
    config.write_text(
        f"auth:\n  enabled: true\n  tokensFile: {tokens}\n"
        f"limits:\n  requestsPerSecond: {RATE}\n  requestBurst: 2\n"
        # With auth on, local model paths must lie under storage.localRoots.
        f"storage:\n  localRoots: [{work}]\n"
    )
    registration = Registration(name="m", type="sklearn", path=model, load_now=True)
    with run_up(work / "data", register=[registration], args=["--config", str(config)]) as up:
        yield up


def _infer(up: Up, token: str) -> None:
    client = triton_grpc.InferenceServerClient(url=up.grpc)
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        client.infer("m", [tensor], headers={"authorization": f"Bearer {token}"})
    finally:
        client.close()


def _rest_infer(up: Up, token: str) -> httpx.Response:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
    return httpx.post(
        f"{up.rest_url}/v2/models/m/infer",
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        timeout=30,
    )


def test_a_credential_over_its_rate_is_refused_then_recovers(rated: Up) -> None:
    _infer(rated, BOB)  # the model is loaded (and bob has one request left)
    before = _rejected(rated, "rate")
    _infer(rated, ALICE)
    _infer(rated, ALICE)
    with pytest.raises(InferenceServerException) as refused:
        _infer(rated, ALICE)
    assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "rate limit exceeded for principal 'alice'" in refused.value.message()
    assert f"{RATE:g} requests/s (burst 2)" in refused.value.message()
    # One bucket per credential: bob is not slowed down by alice.
    _infer(rated, BOB)
    # gRPC and REST share the bucket: REST says when to come back.
    answer = _rest_infer(rated, ALICE)
    assert answer.status_code == 429
    assert "principal 'alice'" in answer.json()["error"]
    wait_s = int(answer.headers["retry-after"])
    assert 1 <= wait_s <= 1 / RATE
    # Health probes are never limited.
    for _ in range(5):
        assert httpx.get(f"{rated.rest_url}/v2/health/ready", timeout=10).status_code == 200
    time.sleep(wait_s)
    assert _rest_infer(rated, ALICE).status_code == 200
    assert _rejected(rated, "rate") >= before + 2


# ------------------------------------------------------------------ quotas


def _sizes(path: pathlib.Path) -> tuple[int, int]:
    """(predicted, measured) size of the model, as `up`'s in-process runtime
    will find them: the same code on the same file."""

    async def measure() -> tuple[int, int]:
        spec = ModelSpec(model_id="probe", model_type="sklearn", model_path=str(path))
        async with InProcessRuntime(settings=RuntimeSettings(preload_libraries=False)) as runtime:
            predicted = await runtime.predict_size(spec)
            return predicted, (await runtime.load(spec)).size_bytes

    return asyncio.run(measure())


@pytest.fixture(scope="module")
def quotas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Up, pathlib.Path, int]]:
    work = tmp_path_factory.mktemp("quotas")
    model = make_model(work / "m.skops")
    predicted, measured = _sizes(model)
    # One copy fits (its prediction is under the quota); a second does not
    # (the first one's measured size plus the second's prediction is over).
    quota = predicted + measured // 2
    config = work / "config.yaml"
    config.write_text(f"limits:\n  modelsPerNamespace: 3\n  namespaceMaxBytes: {quota}\n")
    with run_up(work / "data", args=["--config", str(config)]) as up:
        yield up, model, quota


def _status(reply: mm.ModelStatusInfo) -> str:
    return str(mm.ModelStatusInfo.ModelStatus.Name(reply.status))


def test_a_namespace_over_its_model_count_cannot_register(
    quotas: tuple[Up, pathlib.Path, int],
) -> None:
    up, model, _ = quotas
    management = up.management
    before = _rejected(up, "models_per_namespace")
    for name in ("count/a", "count/b", "count/c"):
        management.register(name, type="sklearn", path=model)
    with pytest.raises(grpc.RpcError) as refused:
        management.register("count/d", type="sklearn", path=model)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        "cannot register model 'count/d': namespace 'count' has 3 models, its quota "
        "(limits.modelsPerNamespace) is 3; unregister one first"
    )
    assert "count/d" not in management.models()
    # Other namespaces are counted apart.
    management.register("other/a", type="sklearn", path=model)
    assert _rejected(up, "models_per_namespace") == before + 1


def test_a_load_over_the_namespace_byte_quota_fails_with_the_reason(
    quotas: tuple[Up, pathlib.Path, int],
) -> None:
    up, model, quota = quotas
    management = up.management
    before = _rejected(up, "namespace_bytes")
    first = management.register("bytes/a", type="sklearn", path=model, load_now=True, sync=True)
    assert _status(first) == "LOADED"
    # Predicted (1.3 x its file, scaled by what loads measured so far, at
    # least a tenth) well over what is left: refused before any load, so
    # the file is only ever sized, never read.
    big = model.parent / "big.skops"
    big.write_bytes(bytes(40 * quota))
    second = management.register("bytes/b", type="sklearn", path=big, load_now=True, sync=True)
    assert _status(second) == "LOADING_FAILED"
    (reason,) = second.errors
    assert "would take namespace 'bytes' to" in reason
    assert f"over its quota (limits.namespaceMaxBytes) of {quota} bytes" in reason
    # Inference on the refused model says why too.
    client = triton_grpc.InferenceServerClient(url=up.grpc)
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        with pytest.raises(InferenceServerException) as refused:
            client.infer("bytes/b", [tensor])
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "limits.namespaceMaxBytes" in refused.value.message()
    finally:
        client.close()
    # The same model in another namespace loads.
    other = management.register("roomy/b", type="sklearn", path=model, load_now=True, sync=True)
    assert _status(other) == "LOADED"
    assert _rejected(up, "namespace_bytes") == before + 1


# ------------------------------------------------------------------ request bodies

BUDGET = 4 * 1024 * 1024
"""server.maxInflightDecodeBytes of the `budgeted` up: one 3 MiB body at a time."""


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("budget")
    registration = Registration(name="m", type="sklearn", path=make_model(work / "m.skops"))
    env = {"MESHSERVE_SERVER__MAX_INFLIGHT_DECODE_BYTES": str(BUDGET)}
    with run_up(work / "data", register=[registration], env=env) as up:
        yield up


def _rows_body(rows: int) -> bytes:
    """A valid JSON infer body for model m: ``rows`` rows of 4 FP32 features."""
    tensor = {"name": "input-0", "shape": [rows, 4], "datatype": "FP32", "data": [1.5] * (rows * 4)}
    return json.dumps({"inputs": [tensor]}).encode()


def _address(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _connect(hostport: str, *, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(_address(hostport), timeout=60, source_address=(source, 0))
    return sock


def _post_head(path: str, *, length: int | None = None) -> bytes:
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _status_line(sock: socket.socket) -> bytes:
    """The answer's status line, or b"" when the server closed (or reset)
    the connection without one."""
    received = b""
    try:
        while b"\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
    except ConnectionResetError:
        pass
    return received.split(b"\r\n", 1)[0]


def _closed(sock: socket.socket) -> bool:
    """Read until the server closes the connection (True), or 60 s pass."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def test_concurrent_large_bodies_beyond_the_budget_are_refused_while_small_ones_are_served(
    budgeted: Up,
) -> None:
    up = budgeted
    before = _rejected(up, "inflight_bytes")
    body = _rows_body(3 * 1024 * 1024 // 20)  # ~3 MiB of JSON
    assert BUDGET / 2 < len(body) < BUDGET
    half = len(body) // 2
    # 8 clients send their headers and half their body, and wait: the first
    # one the server reads holds its 3 MiB; the others do not fit beside it.
    senders = [_connect(up.rest) for _ in range(8)]
    try:
        for sock in senders:
            sock.sendall(_post_head("/v2/models/m/infer", length=len(body)) + body[:half])
        # Meanwhile a small request is served, on REST and on gRPC.
        small = httpx.post(f"{up.rest_url}/v2/models/m/infer", content=_rows_body(1), timeout=60)
        assert small.status_code == 200, small.text
        _infer_rows(up, rows=1)
        # A large gRPC request does not fit either: the budget is shared.
        with pytest.raises(InferenceServerException) as refused:
            _infer_rows(up, rows=2 * 1024 * 1024 // 16)
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "server.maxInflightDecodeBytes" in refused.value.message()
        for sock in senders:
            sock.sendall(body[half:])
        statuses = [_status_line(sock).split(b" ")[1] for sock in senders]
    finally:
        for sock in senders:
            sock.close()
    assert sorted(statuses) == [b"200"] + [b"429"] * 7
    assert _rejected(up, "inflight_bytes") == before + 8
    # The budget is free again: a large body alone is served.
    large = httpx.post(f"{up.rest_url}/v2/models/m/infer", content=body, timeout=60)
    assert large.status_code == 200


def _infer_rows(up: Up, *, rows: int) -> None:
    client = triton_grpc.InferenceServerClient(url=up.grpc)
    try:
        tensor = triton_grpc.InferInput("input-0", [rows, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((rows, 4), dtype=np.float32))
        client.infer("m", [tensor], client_timeout=60)
    finally:
        client.close()


def test_a_huge_model_name_gets_a_bounded_error_and_the_server_keeps_serving(
    budgeted: Up,
) -> None:
    up = budgeted
    name = "n" * 100_000
    client = triton_grpc.InferenceServerClient(url=up.grpc)
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        with pytest.raises(InferenceServerException) as unknown:
            client.infer(name, [tensor], client_timeout=60)
        assert unknown.value.status() == "StatusCode.NOT_FOUND"
        assert "(100000 characters) is not registered" in unknown.value.message()
        assert len(unknown.value.message()) < 1024
        with pytest.raises(InferenceServerException) as metadata:
            client.get_model_metadata(name, client_timeout=60)
        assert metadata.value.status() == "StatusCode.NOT_FOUND"
        assert len(metadata.value.message()) < 1024
    finally:
        client.close()
    with pytest.raises(grpc.RpcError) as refused:
        up.management.register(name, type="", path="/nowhere")
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "(100000 characters): modelInfo.type must not be empty" in (
        refused.value.details() or ""
    )
    assert len(refused.value.details() or "") < 1024
    answer = httpx.post(
        f"{up.rest_url}/v2/models/m/infer",
        content=_rows_body(1),
        headers={"mm-model-id": name},
        timeout=60,
    )
    assert answer.status_code == 404
    assert len(answer.content) < 1024
    assert "(100000 characters)" in answer.json()["error"]
    assert httpx.post(f"{up.rest_url}/v2/models/m/infer", content=_rows_body(1)).status_code == 200
    _infer_rows(up, rows=1)


# ------------------------------------------------------------------ slow clients

CAP = 8
"""server.maxConnectionsPerClient of the `guarded` up."""
_LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("slow")
    registration = Registration(name="m", type="sklearn", path=make_model(work / "m.skops"))
    env = {
        "MESHSERVE_SERVER__HEADER_TIMEOUT_S": "2",
        "MESHSERVE_SERVER__BODY_TIMEOUT_S": "2",
        "MESHSERVE_SERVER__IDLE_TIMEOUT_S": "60",
        "MESHSERVE_SERVER__MAX_CONNECTIONS_PER_CLIENT": str(CAP),
    }
    with run_up(work / "data", register=[registration], env=env) as up:
        yield up


def _still_serving(up: Up) -> None:
    assert httpx.post(f"{up.rest_url}/v2/models/m/infer", content=_rows_body(1)).status_code == 200
    _infer_rows(up, rows=1)


def test_a_client_that_stalls_in_its_headers_is_cut_after_the_header_timeout(
    guarded: Up,
) -> None:
    with _connect(guarded.rest) as partial, _connect(guarded.rest) as silent:
        partial.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: test\r\nContent-")
        assert _status_line(partial).startswith(b"HTTP/1.1 408 ")
        assert _closed(partial)
        assert _closed(silent)  # connected, sent nothing
    _still_serving(guarded)


def test_a_chunked_body_that_never_ends_is_cut_after_the_body_timeout(guarded: Up) -> None:
    with _connect(guarded.rest) as sock:
        sock.sendall(_post_head("/v2/models/m/infer"))
        cut = False
        deadline = time.monotonic() + 60
        while not cut and time.monotonic() < deadline:
            try:
                sock.sendall(b"2\r\n[1\r\n")  # a chunk of body every 0.2 s, for ever
            except (BrokenPipeError, ConnectionResetError):
                cut = True
            time.sleep(0.2)
            readable, _, _ = select.select([sock], [], [], 0)
            cut = cut or bool(readable)
        assert cut, "the server still reads the body after 60 s"
        line = _status_line(sock)
        assert line.startswith(b"HTTP/1.1 408 ") or line == b""
        assert _closed(sock)
    _still_serving(guarded)


def test_connections_beyond_the_per_client_cap_are_refused(guarded: Up) -> None:
    up = guarded
    host, port = _address(up.rest)
    held: list[socket.socket] = []
    try:
        for _ in range(CAP):  # a request each, then kept alive, idle
            held.append(_connect(up.rest))
            held[-1].sendall(_LIVE)
            assert _status_line(held[-1]).startswith(b"HTTP/1.1 200 ")
        with _connect(up.rest) as extra:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                extra.sendall(_LIVE)
            line = _status_line(extra)
            assert line.startswith(b"HTTP/1.1 503 ") or line == b""
        # Another client (another loopback address) is served.
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport, timeout=60) as other:
            answer = other.post(f"http://{host}:{port}/v2/models/m/infer", content=_rows_body(1))
            assert answer.status_code == 200
    finally:
        for sock in held:
            sock.close()
    # Closed connections are no longer counted.
    wait_until(
        lambda: httpx.get(f"{up.rest_url}/v2/health/live", timeout=10).status_code == 200,
        timeout=30,
        what="the client's connections to be released",
    )


def test_a_grpc_client_that_stalls_in_its_handshake_is_cut(guarded: Up) -> None:
    with _connect(guarded.grpc) as partial:
        partial.sendall(b"PRI * HTTP/2.0\r\n")  # half the HTTP/2 preface
        assert _closed(partial)
    _still_serving(guarded)
