"""Authentication and authorisation on a running `meshserve up`: bearer
tokens with roles and model scopes, on gRPC, REST and the CLI (the resource
commands included: they go through the admin API)."""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from tests.integration._credentials import credential
from tests.integration._introspection import health_status, list_services
from tests.integration._mesh import make_model
from tests.integration._resources import isvc
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(120)

ADMIN, VIEWER, LIMITED = map(credential, ("admin-token-1", "viewer-token-2", "limited-token-3"))
EDITOR_A = credential("team-a-editor-token-4")


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
        f"  - {{name: team-a-editor, tokenSha256: {_sha(EDITOR_A)}, role: editor,"
        " namespaces: [team-a]}\n"
    )
    config = work / "config.yaml"
    # With auth on, local model paths must lie under storage.localRoots.
    config.write_text(
        f"auth:\n  enabled: true\n  tokensFile: {tokens}\nstorage:\n  localRoots: [{work}]\n"
    )
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


def test_grpc_health_is_open_and_reflection_needs_a_credential(up: Up) -> None:
    with grpc.insecure_channel(up.grpc) as channel:
        # Kubernetes' gRPC probes send no credentials.
        assert health_status(channel) == "SERVING"
        with pytest.raises(grpc.RpcError) as refused:
            list_services(channel)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        viewer = [("authorization", f"Bearer {VIEWER}")]
        assert "inference.GRPCInferenceService" in list_services(channel, metadata=viewer)


def test_http_probes_are_open_and_the_api_description_needs_a_credential(up: Up) -> None:
    with httpx.Client(base_url=up.rest_url, timeout=10) as http:
        assert http.get("/live").status_code == 200
        assert http.get("/ready").status_code == 200
        viewer = {"authorization": f"Bearer {VIEWER}"}
        for path in ("/v2/openapi.json", "/docs", "/docs/swagger-ui.css"):
            assert http.get(path).status_code == 401, path
            assert http.get(path, headers=viewer).status_code == 200, path


def test_roles_and_model_scopes(up: Up) -> None:
    assert _infer(up, "m-a", VIEWER).shape == (1,)
    assert _infer(up, "m-b", VIEWER).shape == (1,)
    assert _infer(up, "m-a", LIMITED).shape == (1,)
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        _infer(up, "m-b", LIMITED)
    # A viewer cannot register; an admin can.
    missing = str(up.data_dir.parent / "nonexistent")
    register = ["models", "register", "m-c", "--type", "sklearn", "--path", missing]
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


_DENIED = re.compile(r"^meshserve_auth_denied_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def _denials(up: Up) -> dict[tuple[str, str], float]:
    """meshserve_auth_denied_total by (kind, method)."""
    endpoints = (up.data_dir / "endpoints.json").read_text()
    metrics_url = json.loads(endpoints)["instances"][0]["metrics"]
    counted = {}
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        match = _DENIED.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            counted[labels["kind"], labels["method"]] = float(match["value"])
    return counted


def test_denials_are_counted(up: Up) -> None:
    assert {kind for kind, _ in _denials(up)} == {"unauthenticated", "forbidden"}


# -- the resource commands, through the admin API ------------------------------

_ADMIN_API = "/meshserve.admin.v1.Admin/"


def _isvc(name: str, namespace: str) -> str:
    return isvc(name, namespace=namespace, uri="pvc://claim/model.skops")


SECRET = """
apiVersion: v1
kind: Secret
metadata:
  name: storage-config
  namespace: {namespace}
stringData:
  localMinIO: '{{"type": "s3", "bucket": "models"}}'
"""

CLUSTER_RUNTIME = """
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata:
  name: shared-rt
spec:
  multiModel: true
  supportedModelFormats:
    - name: sklearn
  containers:
    - name: server
      image: registry.example.test/srv:1
"""


def _resources(
    up: Up, *args: str, token: str | None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """A resource command against ``up``'s data dir (its API), as ``token``."""
    command = [sys.executable, "-m", "meshserve", *args, "--data-dir", str(up.data_dir)]
    if token:
        command += ["--token", token]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        input=textwrap.dedent(stdin) if stdin is not None else None,
        timeout=60,
    )


def _apply(up: Up, text: str, *, token: str | None) -> subprocess.CompletedProcess[str]:
    return _resources(up, "apply", "-f", "-", token=token, stdin=text)


def _refused(done: subprocess.CompletedProcess[str], status: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert status in done.stderr, done.stderr


def test_resource_commands_need_a_credential(up: Up) -> None:
    before = _denials(up)
    _refused(
        _apply(up, _isvc("anon", "team-a"), token=None),
        "UNAUTHENTICATED",
    )
    _refused(_resources(up, "get", "isvc", "-A", token=None), "UNAUTHENTICATED")
    _refused(_resources(up, "describe", "isvc", "anon", token=None), "UNAUTHENTICATED")
    _refused(_resources(up, "delete", "isvc", "anon", token=None), "UNAUTHENTICATED")
    _refused(_resources(up, "get", "isvc", token="not-a-token"), "UNAUTHENTICATED")
    _refused(_resources(up, "get", "isvc", "-w", token=None), "UNAUTHENTICATED")
    after = _denials(up)
    counted = (
        ("ApplyResources", 1),
        ("StreamResources", 3),
        ("WatchResources", 1),
        ("DeleteResources", 1),
    )
    for method, more in counted:
        key = ("unauthenticated", _ADMIN_API + method)
        assert after.get(key, 0) - before.get(key, 0) == more, (key, before, after)


def test_a_viewer_reads_resources_but_does_not_change_them(up: Up) -> None:
    created = _apply(up, _isvc("seen", "team-a"), token=ADMIN)
    assert created.returncode == 0, created.stderr
    before = _denials(up)
    listed = _resources(up, "get", "isvc", "-n", "team-a", "-o", "json", token=VIEWER)
    assert listed.returncode == 0, listed.stderr
    assert "seen" in {item["metadata"]["name"] for item in json.loads(listed.stdout)["items"]}
    described = _resources(up, "describe", "isvc", "seen", "-n", "team-a", token=VIEWER)
    assert described.returncode == 0, described.stderr
    assert "name: seen" in described.stdout
    _refused(
        _apply(up, _isvc("seen", "team-a"), token=VIEWER),
        "PERMISSION_DENIED",
    )
    _refused(
        _resources(up, "delete", "isvc", "seen", "-n", "team-a", token=VIEWER), "PERMISSION_DENIED"
    )
    after = _denials(up)
    for method in ("ApplyResources", "DeleteResources"):
        key = ("forbidden", _ADMIN_API + method)
        assert after.get(key, 0) - before.get(key, 0) == 1, (key, before, after)


def test_an_editor_changes_resources_in_its_namespace_only(up: Up) -> None:
    before = _denials(up)
    done = _apply(up, _isvc("mine", "team-a"), token=EDITOR_A)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "inferenceservice/mine created"
    again = _apply(up, _isvc("mine", "team-a"), token=EDITOR_A)
    assert again.stdout.strip() == "inferenceservice/mine unchanged", again.stderr
    # Refused per document, in the servicer; counted there too.
    _refused(
        _apply(up, _isvc("theirs", "team-b"), token=EDITOR_A),
        "PERMISSION_DENIED",
    )
    _refused(_apply(up, SECRET.format(namespace="team-a"), token=EDITOR_A), "PERMISSION_DENIED")
    _refused(_apply(up, CLUSTER_RUNTIME, token=EDITOR_A), "PERMISSION_DENIED")
    _refused(_resources(up, "get", "isvc", "-n", "team-b", token=EDITOR_A), "PERMISSION_DENIED")
    after = _denials(up)
    key = ("forbidden", _ADMIN_API + "ApplyResources")
    assert after.get(key, 0) - before.get(key, 0) == 3, (before, after)
    deleted = _resources(up, "delete", "isvc", "mine", "-n", "team-a", token=EDITOR_A)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "inferenceservice/mine deleted"


def test_an_admin_applies_secrets_and_cluster_runtimes(up: Up) -> None:
    for text in (
        SECRET.format(namespace="team-b"),
        CLUSTER_RUNTIME,
        _isvc("theirs", "team-b"),
    ):
        done = _apply(up, text, token=ADMIN)
        assert done.returncode == 0, done.stderr
    secret = _resources(
        up, "get", "secret", "storage-config", "-n", "team-b", "-o", "json", token=ADMIN
    )
    assert secret.returncode == 0, secret.stderr
    assert json.loads(secret.stdout)["data"]["localMinIO"].startswith("<sealed, ")
    removed = _resources(up, "delete", "clusterservingruntime", "shared-rt", token=ADMIN)
    assert removed.returncode == 0, removed.stderr


def test_get_all_namespaces_lists_only_what_the_credential_may_see(up: Up) -> None:
    for name, namespace in (("listed-a", "team-a"), ("listed-b", "team-b")):
        done = _apply(up, _isvc(name, namespace), token=ADMIN)
        assert done.returncode == 0, done.stderr

    def namespaces(token: str) -> set[str]:
        listed = _resources(up, "get", "isvc", "-A", "-o", "json", token=token)
        assert listed.returncode == 0, listed.stderr
        return {item["metadata"]["namespace"] for item in json.loads(listed.stdout)["items"]}

    assert namespaces(EDITOR_A) == {"team-a"}
    assert {"team-a", "team-b"} <= namespaces(ADMIN)
    table = _resources(up, "get", "isvc", "-A", token=EDITOR_A)
    assert "listed-b" not in table.stdout and "listed-a" in table.stdout


def test_the_tokens_file_is_the_only_place_tokens_are_known(up: Up) -> None:
    log = pathlib.Path(up.log).read_text()
    for token in (ADMIN, VIEWER, LIMITED, EDITOR_A, "not-a-token"):
        assert token not in log
