"""model-serving-config keys ModelMesh honours, through a real `meshserve up`:
``enableAccessLogging`` (one access line per inference request),
``metrics.perModel`` (``modelId`` and ``vModelId`` labels) and
``metrics.scheme: https`` (the metrics port served with the instance's
certificate)."""

from __future__ import annotations

import contextlib
import http.client
import json
import pathlib
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import trustme
from tritonclient.utils import InferenceServerException

from meshserve.protocol._pb import model_mesh_pb2 as mm
from tests.integration._mesh import make_model
from tests.integration._up import TABULAR_INPUT, Registration, Up, run_up, wait_until

pytestmark = pytest.mark.timeout(180)

ROWS = np.ones((1, 4), dtype=np.float32)
_ACCESS = re.compile(r"meshserve\.access: (rest|grpc) ModelInfer (.*)$")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return make_model(tmp_path_factory.mktemp("model") / "m.skops")


def _up_with(
    directory: pathlib.Path, model: pathlib.Path, config: str
) -> contextlib.AbstractContextManager[Up]:
    (directory / "config.yaml").write_text(config)
    return run_up(
        directory / "data",
        register=[Registration(name="m", type="sklearn", path=model)],
        args=["--config", str(directory / "config.yaml")],
    )


def _grpc_input() -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput(TABULAR_INPUT, [1, 4], "FP32")
    tensor.set_data_from_numpy(ROWS)
    return tensor


def _http_input() -> triton_http.InferInput:
    tensor = triton_http.InferInput(TABULAR_INPUT, [1, 4], "FP32")
    tensor.set_data_from_numpy(ROWS, binary_data=False)
    return tensor


@pytest.fixture(scope="module")
def logging_up(model: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    directory = tmp_path_factory.mktemp("access-on")
    config = "enableAccessLogging: true\nmetrics:\n  perModel: true\n"
    with _up_with(directory, model, config) as up:
        up.management.mesh.setVModel(
            mm.SetVModelRequest(vModelId="v", targetModelId="m"), timeout=30
        )
        yield up


def _access_lines(up: Up) -> list[tuple[str, str]]:
    found = []
    for line in up.log.read_text(errors="replace").splitlines():
        match = _ACCESS.search(line)
        if match:
            found.append((match.group(1), match.group(2)))
    return found


def _metrics_url(up: Up) -> str:
    """The metrics URL of the (only) instance."""
    (instance,) = json.loads((up.data_dir / "endpoints.json").read_text())["instances"]
    url: str = instance["metrics"]
    return url


def _scrape(url: str, *, context: ssl.SSLContext | None = None) -> str:
    with urllib.request.urlopen(url, timeout=10, context=context) as reply:
        text: str = reply.read().decode()
    return text


def test_each_inference_writes_one_access_line(logging_up: Up) -> None:
    before = len(_access_lines(logging_up))
    grpc = logging_up.grpc_client()
    rest = logging_up.http_client()
    try:
        grpc.infer("v", [_grpc_input()], client_timeout=60)
        rest.infer("m", [_http_input()])
        with pytest.raises(InferenceServerException):
            rest.infer("nope", [_http_input()])
    finally:
        grpc.close()
        rest.close()
    lines = wait_until(
        lambda: (found := _access_lines(logging_up)[before:]) and len(found) >= 3 and found,
        timeout=30,
        what="three access lines",
    )
    assert len(lines) == 3, lines
    (g_proto, g_fields), (r_proto, r_fields), (bad_proto, bad_fields) = lines
    assert g_proto == "grpc"
    assert 'model="m" vmodel="v" code=OK latency_ms=' in g_fields
    assert re.search(r'peer="ipv4:127\.0\.0\.1:\d+" instance="[^"]+"$', g_fields), g_fields
    assert r_proto == "rest"
    assert 'model="m" vmodel="" code=200 latency_ms=' in r_fields
    assert re.search(r'peer="127\.0\.0\.1:\d+" instance="[^"]+"$', r_fields), r_fields
    assert bad_proto == "rest"
    assert 'model="" vmodel="" code=404' in bad_fields
    # Never the payload.
    assert "input-0" not in logging_up.log.read_text(errors="replace")


def test_per_model_labels_name_the_model_and_the_vmodel(logging_up: Up) -> None:
    grpc = logging_up.grpc_client()
    try:
        grpc.infer("v", [_grpc_input()], client_timeout=60)
        grpc.infer("m", [_grpc_input()], client_timeout=60)
    finally:
        grpc.close()
    text = _scrape(_metrics_url(logging_up))
    for vmodel in ("v", ""):
        wanted = (
            'modelmesh_invoke_model_milliseconds_count{code="OK",method="ModelInfer",'
            f'modelId="m",vModelId="{vmodel}"}}'
        )
        assert wanted in text, text
    assert 'modelmesh_loadmodel_milliseconds_count{modelId="m",vModelId=""}' in text


def test_off_by_default_no_access_lines_and_no_model_labels(
    model: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    with _up_with(tmp_path, model, "podsPerRuntime: 1\n") as up:
        rest = up.http_client()
        try:
            rest.infer("m", [_http_input()])
        finally:
            rest.close()
        text = _scrape(_metrics_url(up))
        assert "modelmesh_invoke_model_milliseconds_count" in text
        assert "modelId" not in text
        assert _access_lines(up) == []


def test_https_metrics_use_the_instance_certificate(tmp_path: pathlib.Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    secret = tmp_path / "mm-tls"
    secret.mkdir()
    leaf.private_key_pem.write_to_path(str(secret / "tls.key"))
    leaf.cert_chain_pems[0].write_to_path(str(secret / "tls.crt"))
    ca.cert_pem.write_to_path(str(secret / "ca.crt"))
    config = tmp_path / "config.yaml"
    config.write_text("tls: {secretName: mm-tls}\nmetrics: {scheme: https}\n")
    with run_up(tmp_path / "data", args=["--config", str(config)]) as up:
        url = _metrics_url(up)
        assert url.startswith("https://127.0.0.1:")
        trusting = ssl.create_default_context(cafile=str(secret / "ca.crt"))
        assert "modelmesh_instance_capacity_bytes" in _scrape(url, context=trusting)
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _scrape(url, context=ssl.create_default_context())  # not the CA: untrusted
        plain = "http://" + url.removeprefix("https://")
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
            _scrape(plain)
