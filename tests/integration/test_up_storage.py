"""Models pulled from real object stores, loaded and served by `meshserve up`.

One `up` reads a storage-config naming SeaweedFS (S3), Azurite (Azure Blob),
fake-gcs-server (GCS), an HTTPS server with a test CA, and a PVC root; each
model is registered by reference, pulled, loaded and served to tritonclient.
No credential may appear in the instance's log or in any status.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from meshserve.storage import build_model_key
from tests.integration._mesh import make_model
from tests.integration._objstores import (
    AzuriteServer,
    GcsServer,
    HttpsServer,
    S3Server,
    run_azurite,
    run_fake_gcs,
    run_https_server,
    run_seaweedfs,
)
from tests.integration._up import Up, run_up

pytestmark = pytest.mark.timeout(240)

OBJECT = "iris/model.skops"
WRONG_SECRET = "wrong-secret-" + "x" * 20


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("storage-up")


FILLERS = 100
"""Copies of the model in the bucket: more than the up's capacity holds."""


@pytest.fixture(scope="module")
def model(work: pathlib.Path) -> pathlib.Path:
    return make_model(work / "artifact" / "model.skops")


@pytest.fixture(scope="module")
def s3(work: pathlib.Path, model: pathlib.Path) -> Iterator[S3Server]:
    with run_seaweedfs(work / "seaweedfs") as server:
        client = server.client()
        client.create_bucket(Bucket="models")
        client.upload_file(str(model), "models", OBJECT)
        for i in range(FILLERS):
            client.upload_file(str(model), "models", f"other/{i}.skops")
        yield server


@pytest.fixture(scope="module")
def azurite(work: pathlib.Path, model: pathlib.Path) -> Iterator[AzuriteServer]:
    with run_azurite(work / "azurite") as server:
        container = server.client().create_container("models")
        container.upload_blob(OBJECT, model.read_bytes())
        yield server


@pytest.fixture(scope="module")
def gcs(work: pathlib.Path, model: pathlib.Path) -> Iterator[GcsServer]:
    with run_fake_gcs(work / "gcs") as server:
        bucket = server.client().create_bucket("models")
        bucket.blob(OBJECT).upload_from_filename(str(model))
        yield server


@pytest.fixture(scope="module")
def https(work: pathlib.Path, model: pathlib.Path) -> Iterator[HttpsServer]:
    with run_https_server(work / "https") as server:
        target = server.root / OBJECT
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(model.read_bytes())
        yield server


@pytest.fixture(scope="module")
def pvc_root(work: pathlib.Path, model: pathlib.Path) -> pathlib.Path:
    target = work / "pvcs" / "claim" / OBJECT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(model.read_bytes())
    return work / "pvcs"


@pytest.fixture(scope="module")
def secrets(s3: S3Server, azurite: AzuriteServer) -> list[str]:
    return [s3.secret_access_key, s3.access_key_id, azurite.account_key, WRONG_SECRET]


@pytest.fixture(scope="module")
def up(
    work: pathlib.Path,
    s3: S3Server,
    azurite: AzuriteServer,
    gcs: GcsServer,
    https: HttpsServer,
    pvc_root: pathlib.Path,
) -> Iterator[Up]:
    s3_entry = {
        "type": "s3",
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key,
        "endpoint_url": s3.endpoint_url,
        "region": s3.region,
        "bucket": "models",
    }
    config = {
        "s3": s3_entry,
        "default_s3": s3_entry,
        "s3-wrong-secret": dict(s3_entry, secret_access_key=WRONG_SECRET),
        "azure": {
            "type": "azure",
            "connection_string": azurite.connection_string,
            "container": "models",
        },
        "gcs": {"type": "gcs", "endpoint_url": gcs.endpoint_url, "bucket": "models"},
        "https": {"type": "http", "url": https.url, "certificate": https.ca_pem.read_text()},
    }
    config_file = work / "storage-config.json"
    config_file.write_text(json.dumps({key: json.dumps(value) for key, value in config.items()}))
    args = ["--storage-config", str(config_file), "--pvc-root", str(pvc_root)]
    # Room for the first of these models' prediction (~270 kB before any
    # load) and for a few dozen loaded ones (~15 kB each), so the cache test
    # can fill it up with FILLERS.
    with run_up(work / "data", args=[*args, "--capacity", str(1000000)]) as running:
        yield running


def _infer(up: Up, name: str) -> np.ndarray:
    client = up.grpc_client()
    try:
        data = np.ones((2, 4), dtype=np.float32)
        tensor = triton_grpc.InferInput("input-0", [2, 4], "FP32")
        tensor.set_data_from_numpy(data)
        output = client.infer(name, [tensor], client_timeout=60).as_numpy("predict")
        assert output is not None
        return output
    finally:
        client.close()


def _register(up: Up, name: str, *, key: str, path: str) -> str:
    reply = up.management.mesh.registerModel(_request(name, key=key, path=path), timeout=60)
    return str(reply.errors)


def _request(name: str, *, key: str, path: str) -> object:
    from meshserve.protocol._pb import model_mesh_pb2 as mm

    return mm.RegisterModelRequest(
        modelId=name,
        modelInfo=mm.ModelInfo(type="sklearn", path=path, key=key),
        loadNow=True,
        sync=True,
    )


@pytest.mark.parametrize("storage_key", ["s3", "azure", "gcs", "https"])
def test_a_model_in_each_store_is_pulled_loaded_and_served(up: Up, storage_key: str) -> None:
    name = f"from-{storage_key}"
    key = build_model_key(model_type="sklearn", storage_key=storage_key)
    _register(up, name, key=key, path=OBJECT)
    assert up.management.status_name(name) == "LOADED", up.management.status(name).errors
    assert _infer(up, name).shape == (2,)
    summary = up.management.models()[name]
    assert summary.pullBytes > 0


def test_a_pvc_model_is_served_in_place(up: Up, pvc_root: pathlib.Path) -> None:
    _register(up, "from-pvc", key="", path=f"pvc://claim/{OBJECT}")
    assert up.management.status_name("from-pvc") == "LOADED"
    assert _infer(up, "from-pvc").shape == (2,)


def test_the_cli_registers_by_uri_and_lists_the_pull(up: Up) -> None:
    command = [sys.executable, "-m", "meshserve", "models", "register", "by-uri"]
    command += ["--type", "sklearn", "--uri", f"s3://models/{OBJECT}", "--load-now", "--sync"]
    command += ["--endpoint", up.grpc]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "LOADED" in done.stdout
    assert "pulled by-uri: " in done.stderr
    assert _infer(up, "by-uri").shape == (2,)
    listed = subprocess.run(
        [sys.executable, "-m", "meshserve", "models", "list", "--endpoint", up.grpc],
        capture_output=True,
        text=True,
        timeout=30,
    )
    line = next(row for row in listed.stdout.splitlines() if row.startswith("by-uri"))
    assert " ms" in line, line  # PULL: bytes in N ms
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshserve",
            "models",
            "status",
            "by-uri",
            "-o",
            "json",
            "--endpoint",
            up.grpc,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    pull = json.loads(status.stdout)["pull"]
    # The same object as from-s3's: the artifact cache had it already.
    assert pull["bytes"] > 0 and pull["fromCache"] is True


def test_wrong_credentials_bucket_or_path_fail_clearly(up: Up, secrets: list[str]) -> None:
    cases = {
        "bad-secret": (
            build_model_key(model_type="sklearn", storage_key="s3-wrong-secret"),
            OBJECT,
        ),
        "bad-path": (build_model_key(model_type="sklearn", storage_key="s3"), "iris/missing.skops"),
        "bad-bucket": (
            build_model_key(
                model_type="sklearn", storage_key="s3", storage_params={"bucket": "no-such-bucket"}
            ),
            OBJECT,
        ),
        "bad-key": (build_model_key(model_type="sklearn", storage_key="no-such-key"), OBJECT),
    }
    for name, (key, path) in cases.items():
        _register(up, name, key=key, path=path)
        status = up.management.status(name)
        assert up.management.status_name(name) == "LOADING_FAILED", name
        message = "; ".join(status.errors)
        assert ("missing.skops" in message) if name == "bad-path" else True
        assert ("no-such-key" in message) if name == "bad-key" else True
        for secret in secrets:
            assert secret not in message
    _infer(up, "from-s3")  # and it keeps serving


def test_a_model_evicted_and_loaded_again_comes_from_the_cache(up: Up, s3: S3Server) -> None:
    key = build_model_key(model_type="sklearn", storage_key="s3")
    name = f"cached-{uuid.uuid4().hex[:6]}"
    _register(up, name, key=key, path="other/0.skops")
    assert up.management.status_name(name) == "LOADED"
    gets = s3.request_count(key_substring="other/0.skops")
    assert gets >= 1
    for i in range(1, FILLERS):
        _register(up, f"{name}-filler-{i}", key=key, path=f"other/{i}.skops")
        if up.management.status_name(name) == "NOT_LOADED":
            break
    assert up.management.status_name(name) == "NOT_LOADED", "evicted by the fillers"
    assert _infer(up, name).shape == (2,)
    assert s3.request_count(key_substring="other/0.skops") == gets
    assert up.management.models()[name].pulledFromCache


def test_a_large_pull_reports_progress(up: Up, s3: S3Server, work: pathlib.Path) -> None:
    big = work / "big.skops"
    big.write_bytes(np.random.default_rng(0).bytes(16 * 2**20))  # pulls, then fails to load
    s3.client().upload_file(str(big), "models", "big/model.skops")
    command = [sys.executable, "-m", "meshserve", "models", "register", "big"]
    command += ["--type", "sklearn", "--storage-key", "s3", "--path", "big/model.skops"]
    command += ["--load-now", "--sync", "--endpoint", up.grpc]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, "the artifact is no model"
    assert "pulled big: 16.0MiB" in done.stderr, done.stderr
    events = [line for line in up.log.read_text().splitlines() if "pulling model big" in line]
    assert len(events) >= 2, events


def test_no_credential_in_the_log(up: Up, secrets: list[str]) -> None:
    _infer(up, "from-azure")
    text = up.log.read_text(errors="replace")
    assert "pulled" in text or "loaded" in text
    for secret in secrets:
        assert secret not in text
