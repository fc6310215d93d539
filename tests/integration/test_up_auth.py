"""Authentication and authorisation on a running `meshserve up`: bearer
tokens with roles and model scopes, on gRPC, REST and the CLI."""

from __future__ import annotations

import hashlib
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from tests.integration._mesh import make_model
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(120)

ADMIN, VIEWER, LIMITED = "admin-token-1", "viewer-token-2", "limited-token-3"


def _sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("auth")
    model = make_model(work / "m.skops")
    tokens = work / "tokens.yaml"
    tokens.write_text(
        "principals:\n"
        f"  - {{name: root, tokenSha256: {_sha(ADMIN)}, role: admin, namespaces: ['*']}}\n"
        f"  - {{name: reader, tokenSha256: {_sha(VIEWER)}, role: viewer, namespaces: ['*']}}\n"
        f"  - {{name: narrow, tokenSha256: {_sha(LIMITED)}, role: viewer, namespaces: ['*'],"
        " models: ['m-a']}\n"
    )
    config = work / "config.yaml"
    config.write_text(f"auth:\n  enabled: true\n  tokensFile: {tokens}\n")
    register = work / "models.yaml"
    register.write_text(
        f"models:\n  - {{name: m-a, type: sklearn, path: {model}}}\n"
        f"  - {{name: m-b, type: sklearn, path: {model}}}\n"
    )
    args = ["--config", str(config), "--register", str(register)]
    with run_up(work / "data", args=args) as running:
        yield running


def _infer(up: Up, model: str, token: str | None) -> np.ndarray:
    client = triton_grpc.InferenceServerClient(url=up.grpc)
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        headers = {"authorization": f"Bearer {token}"} if token else None
        result = client.infer(model, [tensor], headers=headers, client_timeout=30)
        output = result.as_numpy("predict")
        assert output is not None
        return output
    finally:
        client.close()


def _cli(up: Up, *args: str, token: str | None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "meshserve", *args, "--endpoint", up.grpc]
    if token:
        command += ["--token", token]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_no_credential_is_unauthenticated_but_health_is_open(up: Up) -> None:
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        _infer(up, "m-a", None)
    with pytest.raises(InferenceServerException, match="UNAUTHENTICATED"):
        _infer(up, "m-a", "not-a-token")
    refused = httpx.post(f"{up.rest_url}/v2/models/m-a/infer", json={"inputs": []}, timeout=10)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "not-a-token" not in refused.text
    assert httpx.get(f"{up.rest_url}/v2/health/ready", timeout=10).status_code == 200


def test_roles_and_model_scopes(up: Up) -> None:
    assert _infer(up, "m-a", VIEWER).shape == (1,)
    assert _infer(up, "m-b", VIEWER).shape == (1,)
    assert _infer(up, "m-a", LIMITED).shape == (1,)
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        _infer(up, "m-b", LIMITED)
    # A viewer cannot register; an admin can.
    register = ["models", "register", "m-c", "--type", "sklearn", "--path", "/nonexistent"]
    denied = _cli(up, *register, token=VIEWER)
    assert denied.returncode == 1
    assert "PERMISSION_DENIED" in denied.stderr
    allowed = _cli(up, *register, token=ADMIN)
    assert allowed.returncode == 0, allowed.stderr
    # A vmodel does not widen a narrow credential.
    vmodel = _cli(up, "vmodels", "set", "alias-b", "--target", "m-b", token=ADMIN)
    assert vmodel.returncode == 0, vmodel.stderr
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        _infer(up, "alias-b", LIMITED)
    # Listings show only what the caller may see.
    listed = _cli(up, "models", "list", token=LIMITED)
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()[1:]]
    assert names == ["m-a"]
    rest = httpx.post(
        f"{up.rest_url}/v2/models/m-b/infer",
        headers={"Authorization": f"Bearer {LIMITED}"},
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        timeout=10,
    )
    assert rest.status_code == 403


def test_denials_are_counted(up: Up) -> None:
    endpoints = (up.data_dir / "endpoints.json").read_text()
    metrics_url = json.loads(endpoints)["instances"][0]["metrics"]
    text = httpx.get(metrics_url, timeout=10).text
    kinds = {
        line.split('kind="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("meshserve_auth_denied_total{")
    }
    assert kinds == {"unauthenticated", "forbidden"}


def test_the_tokens_file_is_the_only_place_tokens_are_known(up: Up) -> None:
    log = pathlib.Path(up.log).read_text()
    for token in (ADMIN, VIEWER, LIMITED, "not-a-token"):
        assert token not in log
