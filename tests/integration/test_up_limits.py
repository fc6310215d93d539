"""Limits on a running `meshserve up`: request rate per credential (gRPC and
REST, recovering after the window), models per namespace, bytes per
namespace, and the counter of refusals. (The message size limit is
tests/integration/test_up_serving.py::test_oversized_request_is_resource_exhausted_or_413.)"""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
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
from tests.integration._up import Registration, Up, run_up

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
    second = management.register("bytes/b", type="sklearn", path=model, load_now=True, sync=True)
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
