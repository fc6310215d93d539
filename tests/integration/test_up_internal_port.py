"""The internal port of `meshserve up` serves only the instances of its mesh.

Before: the per-instance address in endpoints.json answered any local
process (a pickle model in the sandboxed runtime included) with no token:
listing, inference across namespaces, registerModel, Secrets. Now every
call there must carry the mesh secret, and even with it only what
instances call on each other (forwarded inference, ensureLoaded) is served.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2
from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import model_mesh_pb2 as mm
from meshserve.protocol.peer import MESH_AUTH_HEADER
from meshserve.security import MESH_SECRET_FILE, MeshSecret, resolve_user
from tests._processes import meshserve, wait_for_line
from tests.integration._credentials import credential
from tests.integration._mesh import make_model
from tests.integration._up import Up, metric_total, run_up

pytestmark = pytest.mark.timeout(180)

ADMIN = credential("internal-port-admin-token")
_SECRET_DOC = (
    '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "storage-config",'
    ' "namespace": "default"}, "stringData": {"planted": "{}"}}'
)
_INFER_REQUEST = v2.ModelInferRequest(
    model_name="m",
    inputs=[
        v2.ModelInferRequest.InferInputTensor(
            name="input-0",
            datatype="FP32",
            shape=[1, 4],
            contents=v2.InferTensorContents(fp32_contents=[1.0, 1.0, 1.0, 1.0]),
        )
    ],
)

# What an intruder on the machine would call: method -> (request, response type).
ATTACKS: dict[str, tuple[Any, Any]] = {
    "/inference.GRPCInferenceService/ModelInfer": (_INFER_REQUEST, v2.ModelInferResponse),
    "/inference.GRPCInferenceService/ModelMetadata": (
        v2.ModelMetadataRequest(name="m"),
        v2.ModelMetadataResponse,
    ),
    "/mmesh.ModelMesh/registerModel": (
        mm.RegisterModelRequest(
            modelId="planted", modelInfo=mm.ModelInfo(type="sklearn", path="/etc")
        ),
        mm.ModelStatusInfo,
    ),
    "/mmesh.ModelMesh/setVModel": (
        mm.SetVModelRequest(vModelId="planted-v", targetModelId="m"),
        mm.VModelStatusInfo,
    ),
    "/mmesh.ModelMesh/getModelStatus": (mm.GetStatusRequest(modelId="m"), mm.ModelStatusInfo),
    "/meshserve.admin.v1.Admin/ApplyResources": (
        admin.ApplyResourcesRequest(documents=[_SECRET_DOC]),
        admin.ApplyResourcesResponse,
    ),
    "/meshserve.admin.v1.Admin/ListModels": (admin.ListModelsRequest(), admin.ListModelsResponse),
    "/meshserve.admin.v1.Admin/GetResources": (
        admin.GetResourcesRequest(kind="Secret"),
        admin.GetResourcesResponse,
    ),
}
SERVED = {
    "/inference.GRPCInferenceService/ModelInfer",
    "/inference.GRPCInferenceService/ModelMetadata",
}


def _call(address: str, method: str, *, metadata: tuple[tuple[str, str], ...] = ()) -> Any:
    request, response = ATTACKS[method]
    with grpc.insecure_channel(address) as channel:
        stub = channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        return stub(request, metadata=metadata, timeout=30)


def _code(
    address: str, method: str, *, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        _call(address, method, metadata=metadata)
    return raised.value


def _internal(up: Up) -> str:
    (instance,) = json.loads((up.data_dir / "endpoints.json").read_text())["instances"]
    assert instance["internal"] != instance["grpc"] == up.grpc
    return str(instance["internal"])


def _token(data_dir: pathlib.Path) -> str:
    path = data_dir / MESH_SECRET_FILE
    # The session's end checks no log holds it.
    credential(path.read_text().strip())
    return MeshSecret.from_file(path).token


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("internal-port")
    model = make_model(work / "m.skops")
    tokens = work / "tokens.yaml"
    digest = hashlib.sha256(ADMIN.encode()).hexdigest()
    tokens.write_text(
        f"principals:\n  - {{name: root, tokenSha256: {digest}, role: admin, namespaces: ['*']}}\n"
    )
    config = work / "config.yaml"
    # With auth on, local model paths must lie under storage.localRoots.
    config.write_text(
        f"auth:\n  enabled: true\n  tokensFile: {tokens}\nstorage:\n  localRoots: [{work}]\n"
    )
    register = work / "models.yaml"
    register.write_text(f"models:\n  - {{name: m, type: sklearn, path: {model}, loadNow: true}}\n")
    with run_up(
        work / "data", args=["--config", str(config), "--register", str(register)]
    ) as running:
        yield running


@pytest.mark.parametrize("method", sorted(ATTACKS))
@pytest.mark.parametrize("secret", ["none", "wrong"])
def test_a_call_without_the_mesh_secret_is_unauthenticated(
    up: Up, method: str, secret: str
) -> None:
    metadata = ((MESH_AUTH_HEADER, "0" * 64),) if secret == "wrong" else ()
    error = _code(_internal(up), method, metadata=metadata)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "only other instances of this mesh" in (error.details() or "")


def test_nothing_the_refused_calls_asked_for_happened(up: Up) -> None:
    for method in ATTACKS:
        _code(_internal(up), method)
    admin_token = (("authorization", f"Bearer {ADMIN}"),)
    with grpc.insecure_channel(up.grpc) as channel:
        status = channel.unary_unary(
            "/mmesh.ModelMesh/getModelStatus",
            request_serializer=mm.GetStatusRequest.SerializeToString,
            response_deserializer=mm.ModelStatusInfo.FromString,
        )(mm.GetStatusRequest(modelId="planted"), metadata=admin_token, timeout=30)
        assert status.status == mm.ModelStatusInfo.ModelStatus.NOT_FOUND
        secrets = channel.unary_unary(
            "/meshserve.admin.v1.Admin/GetResources",
            request_serializer=admin.GetResourcesRequest.SerializeToString,
            response_deserializer=admin.GetResourcesResponse.FromString,
        )(admin.GetResourcesRequest(kind="Secret"), metadata=admin_token, timeout=30)
        assert list(secrets.documents) == []
    assert up.proc.poll() is None


def test_management_admin_and_listing_are_not_served_there_even_with_the_secret(up: Up) -> None:
    metadata = ((MESH_AUTH_HEADER, _token(up.data_dir)),)
    for method in sorted(set(ATTACKS) - SERVED):
        error = _code(_internal(up), method, metadata=metadata)
        assert error.code() is grpc.StatusCode.UNIMPLEMENTED, method
    # What peers call is served to a caller that holds the secret.
    hop = (*metadata, ("mm-model-id", "m"))
    reply = _call(_internal(up), "/inference.GRPCInferenceService/ModelInfer", metadata=hop)
    assert reply.model_name == "m"


def test_the_mesh_secret_file_is_its_owner_s_alone(up: Up, tmp_path: pathlib.Path) -> None:
    path = up.data_dir / MESH_SECRET_FILE
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()
    if os.getuid() != 0:
        return  # not root: no other user to try as; the mode bits above are the check
    # As root: the runtime's user tries to read it through a hard link in a
    # directory anyone may enter, so only the file's own mode stands in the way.
    base = pathlib.Path(tempfile.gettempdir())
    if base.stat().st_dev != info.st_dev or not base.stat().st_mode & 0o001:
        return  # no such directory on the data dir's file system: the mode bits stand
    reachable = pathlib.Path(tempfile.mkdtemp(prefix="meshserve-secret-", dir=base))
    try:
        reachable.chmod(0o755)
        link = reachable / MESH_SECRET_FILE
        os.link(path, link)
        uid, gid = resolve_user("nobody")
        read = subprocess.run(
            ["cat", str(link)],
            user=uid,
            group=gid,
            extra_groups=[],
            capture_output=True,
            timeout=30,
        )
        assert read.returncode != 0 and b"Permission denied" in read.stderr
        assert read.stdout == b""
    finally:
        shutil.rmtree(reachable)


def _infer(address: str) -> None:
    client = triton_grpc.InferenceServerClient(url=address)
    try:
        tensor = triton_grpc.InferInput("input-0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        assert client.infer("m", [tensor], client_timeout=30).as_numpy("predict") is not None
    finally:
        client.close()


def test_up_with_instances_forwards_over_the_guarded_internal_port(tmp_path: pathlib.Path) -> None:
    model = make_model(tmp_path / "m.skops")
    register = tmp_path / "models.yaml"
    register.write_text(f"models:\n  - {{name: m, type: sklearn, path: {model}, loadNow: true}}\n")
    data = tmp_path / "data"
    args = ["up", "--instances", "2", "--data-dir", str(data), "--grpc-port", "0"]
    args += ["--rest-port", "0", "--metrics-port", "0", "--register", str(register)]
    with meshserve(args) as proc:
        wait_for_line(proc, r"meshserve up: ready", timeout=120)
        endpoints = json.loads((data / "endpoints.json").read_text())
        shared, instances = endpoints["grpc"], endpoints["instances"]
        # One secret, made by up in its data dir, named in every child's config.
        assert stat.S_IMODE((data / MESH_SECRET_FILE).stat().st_mode) == 0o600
        for index in range(2):
            config = (data / "instances" / str(index) / "instance.yaml").read_text()
            assert str((data / MESH_SECRET_FILE).absolute()) in config
        for entry in instances:
            error = _code(entry["internal"], "/mmesh.ModelMesh/registerModel")
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        with grpc.insecure_channel(shared) as channel:
            status = channel.unary_unary(
                "/mmesh.ModelMesh/getModelStatus",
                request_serializer=mm.GetStatusRequest.SerializeToString,
                response_deserializer=mm.ModelStatusInfo.FromString,
            )(mm.GetStatusRequest(modelId="m"), timeout=30)
        (holder,) = [copy.location for copy in status.modelCopyInfos]
        (other,) = [entry for entry in instances if entry["id"] != holder]
        # Through the instance without the copy (its own public address): it
        # takes the request and runs none itself, so it forwarded it.
        _infer(other["grpc"])
        assert metric_total(other["metrics"], "modelmesh_api_request_milliseconds_count") > 0
        assert metric_total(other["metrics"], "modelmesh_invoke_model_milliseconds_count") == 0
