"""The puller against real stores: SeaweedFS (S3), Azurite, fake-gcs-server, an
HTTPS server with a test CA, and a pvc directory.

Every test's log lines (meshserve's at DEBUG, the libraries' at INFO) and
errors are checked for the credentials in play.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import pathlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from meshserve.errors import (
    ArtifactNotFoundError,
    ArtifactRejectedError,
    StorageAccessDeniedError,
    StorageError,
)
from meshserve.storage import (
    Puller,
    PullProgress,
    StorageConfig,
    StorageSettings,
    build_model_key,
)
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

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
HTTP_TOKEN = "Bearer meshserve-http-token-4c1d"
WRONG_SECRET = "not-the-secret-but-still-secret"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _key(storage_key: str, **params: str) -> str:
    return build_model_key(model_type="onnx", storage_key=storage_key, storage_params=params)


# --------------------------------------------------------------------------
# Servers (one of each per module) and the storage config naming them


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    name = _name("models")
    s3.client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with run_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="module")
def container(azurite: AzuriteServer) -> str:
    name = _name("models")
    azurite.client().create_container(name)
    return name


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    with run_fake_gcs(tmp_path_factory.mktemp("gcs")) as server:
        yield server


@pytest.fixture(scope="module")
def gcs_bucket(gcs: GcsServer) -> str:
    name = _name("models")
    gcs.client().create_bucket(name)
    return name


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsServer]:
    with run_https_server(tmp_path_factory.mktemp("https")) as server:
        yield server


@pytest.fixture(scope="module")
def storage_config(
    s3: S3Server,
    bucket: str,
    azurite: AzuriteServer,
    container: str,
    gcs: GcsServer,
    gcs_bucket: str,
    https: HttpsServer,
) -> dict[str, Any]:
    """The storage-config Secret's data (storage key -> JSON)."""
    s3_entry = {
        "type": "s3",
        "access_key_id": s3.access_key_id,
        "secret_access_key": s3.secret_access_key,
        "endpoint_url": s3.endpoint_url,
        "region": s3.region,
        "bucket": bucket,
    }
    return {
        "s3": json.dumps(s3_entry),
        "s3-wrong-secret": json.dumps(dict(s3_entry, secret_access_key=WRONG_SECRET)),
        "azure": json.dumps(
            {
                "type": "azure",
                "connection_string": azurite.connection_string,
                "container": container,
            }
        ),
        "azure-wrong-key": json.dumps(
            {
                "type": "azure",
                "connection_string": azurite.connection_string.replace(
                    azurite.account_key, "d3Jvbmcta2V5LXdyb25nLWtleQ=="
                ),
                "container": container,
            }
        ),
        "gcs": json.dumps({"type": "gcs", "endpoint_url": gcs.endpoint_url, "bucket": gcs_bucket}),
        "https": json.dumps(
            {"type": "http", "url": https.url, "certificate": https.ca_pem.read_text()}
        ),
        "https-token": json.dumps(
            {
                "type": "http",
                "url": https.url,
                "certificate": https.ca_pem.read_text(),
                "headers": {"Authorization": HTTP_TOKEN},
            }
        ),
        "https-no-ca": json.dumps({"type": "http", "url": https.url}),
    }


@pytest.fixture
def secrets(s3: S3Server, azurite: AzuriteServer) -> list[str]:
    # The access key id too: it names an account, so it stays out as well.
    return [s3.access_key_id, s3.secret_access_key, azurite.account_key, HTTP_TOKEN, WRONG_SECRET]


@pytest.fixture(autouse=True)
def no_credential_in_logs(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> Iterator[None]:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="meshserve")
    yield
    lines = [record.getMessage() for record in caplog.records] + [caplog.text]
    for secret in secrets:
        for line in lines:
            assert secret not in line


@pytest.fixture
async def make_puller(tmp_path: pathlib.Path, storage_config: dict[str, Any]) -> AsyncIterator[Any]:
    """``await make_puller(**settings)``: a puller on this test's data dir,
    closed after the test."""
    stack = contextlib.AsyncExitStack()
    made = 0

    async def make(
        *,
        progress: list[PullProgress] | None = None,
        config: dict[str, Any] | None = None,
        **values: Any,
    ) -> Puller:
        nonlocal made
        made += 1
        settings = StorageSettings.model_validate(
            {
                "retry_initial_backoff_s": 0.05,
                "retry_max_backoff_s": 0.2,
                "request_timeout_s": 10,
                "pvc_root": tmp_path / "pvc",
                **values,
            }
        )
        puller = Puller(
            settings=settings,
            data_dir=tmp_path / f"data-{made}",
            config=StorageConfig.from_mapping(storage_config if config is None else config),
            progress=progress.append if progress is not None else None,
        )
        return await stack.enter_async_context(puller)

    async with stack:
        yield make


def _check_error(error: BaseException, *, key: str, path: str, secrets: list[str]) -> None:
    text = str(error)
    assert f"storage key '{key}'" in text
    assert f"path '{path}'" in text
    for secret in secrets:
        assert secret not in text


# --------------------------------------------------------------------------
# S3 (SeaweedFS)


async def test_s3_file_and_tree_pulled_released_and_served_again_from_cache(
    make_puller: Any, s3: S3Server, bucket: str
) -> None:
    client = s3.client()
    prefix = _name("sk")
    client.put_object(Bucket=bucket, Key=f"{prefix}/model.onnx", Body=b"onnx" * 100)
    client.put_object(Bucket=bucket, Key=f"{prefix}/tree/a.bin", Body=b"a")
    client.put_object(Bucket=bucket, Key=f"{prefix}/tree/sub/b.bin", Body=b"bb")
    puller = await make_puller()

    pulled = await puller.pull(
        model_id="m1", model_path=f"{prefix}/model.onnx", model_key=_key("s3")
    )
    local = pathlib.Path(pulled.local_path)
    assert local == puller.models_dir / "m1" / "model.onnx"
    assert local.read_bytes() == b"onnx" * 100
    assert (pulled.bytes, pulled.from_cache) == (400, False)

    tree = await puller.pull(model_id="t1", model_path=f"{prefix}/tree", model_key=_key("s3"))
    assert (pathlib.Path(tree.local_path) / "sub" / "b.bin").read_bytes() == b"bb"
    assert tree.bytes == 3

    await puller.release("m1")
    assert not local.exists()
    gets = s3.request_count(key_substring=f"{prefix}/model.onnx")
    again = await puller.pull(
        model_id="m1", model_path=f"{prefix}/model.onnx", model_key=_key("s3")
    )
    assert again.from_cache
    assert pathlib.Path(again.local_path).read_bytes() == b"onnx" * 100
    # No object GET: only a HEAD went to the store.
    assert s3.request_count(key_substring=f"{prefix}/model.onnx") == gets == 1


async def test_s3_eight_concurrent_pulls_download_once(
    make_puller: Any, s3: S3Server, bucket: str
) -> None:
    path = f"{_name('shared')}/model.onnx"
    s3.client().put_object(Bucket=bucket, Key=path, Body=b"s" * (2 * MIB))
    puller = await make_puller()
    results = await asyncio.gather(
        *(
            puller.pull(model_id=f"copy-{i}", model_path=path, model_key=_key("s3"))
            for i in range(8)
        )
    )
    assert s3.request_count(key_substring=path) == 1
    assert {pathlib.Path(r.local_path).stat().st_size for r in results} == {2 * MIB}
    assert len({r.local_path for r in results}) == 8


async def test_s3_wrong_secret_bucket_or_path_fail_at_once_with_a_clear_reason(
    make_puller: Any, s3: S3Server, bucket: str, secrets: list[str]
) -> None:
    path = f"{_name('denied')}/model.onnx"
    s3.client().put_object(Bucket=bucket, Key=path, Body=b"x")
    puller = await make_puller(retry_attempts=4)

    before = s3.request_count(method=None, key_substring=path)
    with pytest.raises(StorageAccessDeniedError) as denied:
        await puller.pull(model_id="d", model_path=path, model_key=_key("s3-wrong-secret"))
    _check_error(denied.value, key="s3-wrong-secret", path=path, secrets=secrets)
    # Permanent: one HEAD, no retries.
    assert s3.request_count(method=None, key_substring=path) == before + 1

    with pytest.raises(ArtifactNotFoundError, match="bucket 'no-such-bucket-x'") as no_bucket:
        await puller.pull(
            model_id="b",
            model_path=path,
            model_key=_key("s3", bucket="no-such-bucket-x"),
        )
    _check_error(no_bucket.value, key="s3", path=path, secrets=secrets)

    with pytest.raises(ArtifactNotFoundError) as no_path:
        await puller.pull(model_id="p", model_path="nothing/here.onnx", model_key=_key("s3"))
    _check_error(no_path.value, key="s3", path="nothing/here.onnx", secrets=secrets)
    assert not (puller.models_dir / "p").exists()


async def test_s3_size_limit_refuses_without_downloading(
    make_puller: Any, s3: S3Server, bucket: str
) -> None:
    path = f"{_name('big')}/model.bin"
    s3.client().put_object(Bucket=bucket, Key=path, Body=b"b" * (MIB + 1))
    puller = await make_puller(max_model_bytes=MIB)
    with pytest.raises(ArtifactRejectedError, match="more than the"):
        await puller.pull(model_id="big", model_path=path, model_key=_key("s3"))
    assert s3.request_count(key_substring=path) == 0


async def test_s3_progress_and_the_cache_bound(make_puller: Any, s3: S3Server, bucket: str) -> None:
    prefix = _name("bound")
    client = s3.client()
    client.put_object(Bucket=bucket, Key=f"{prefix}/big.bin", Body=b"p" * (16 * MIB))
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"{prefix}/m{i}.bin", Body=bytes([i]) * MIB)
    events: list[PullProgress] = []
    bound = 2 * MIB + MIB // 2
    puller = await make_puller(progress=events, cache_max_bytes=bound)

    await puller.pull(model_id="big", model_path=f"{prefix}/big.bin", model_key=_key("s3"))
    await asyncio.sleep(0)
    assert len(events) >= 2
    assert events[-1].bytes_done == 16 * MIB
    assert all("storage key 's3'" in e.location for e in events)
    # 16 MiB is over the bound: served, not kept.
    assert puller.cache.total_bytes == 0

    for i in range(3):
        await puller.pull(model_id=f"m{i}", model_path=f"{prefix}/m{i}.bin", model_key=_key("s3"))
        await puller.release(f"m{i}")
        assert puller.cache.total_bytes <= bound
    assert len(puller.cache.keys()) == 2
    on_disk = sum(p.stat().st_size for p in puller.cache.root.rglob("*.bin"))
    assert on_disk <= bound
    # The oldest was evicted: pulled again, it is downloaded again.
    gets = s3.request_count(key_substring=f"{prefix}/m0.bin")
    await puller.pull(model_id="m0", model_path=f"{prefix}/m0.bin", model_key=_key("s3"))
    assert s3.request_count(key_substring=f"{prefix}/m0.bin") == gets + 1


async def test_s3_storage_uri_with_a_default_key(
    make_puller: Any, s3: S3Server, bucket: str, storage_config: dict[str, Any]
) -> None:
    path = f"{_name('uri')}/model.onnx"
    s3.client().put_object(Bucket=bucket, Key=path, Body=b"u")
    # No storage key: `default_s3` serves s3:// URIs.
    puller = await make_puller(config={"default_s3": storage_config["s3"]})
    pulled = await puller.pull(model_id="u", model_path=f"s3://{bucket}/{path}", model_key="")
    assert pathlib.Path(pulled.local_path).read_bytes() == b"u"


# --------------------------------------------------------------------------
# Azure Blob (Azurite)


async def test_azure_file_tree_and_cache(
    make_puller: Any, azurite: AzuriteServer, container: str
) -> None:
    service = azurite.client()
    prefix = _name("az")
    service.get_blob_client(container, f"{prefix}/model.onnx").upload_blob(b"azure" * 10)
    service.get_blob_client(container, f"{prefix}/tree/x/y.bin").upload_blob(b"y")
    puller = await make_puller()

    pulled = await puller.pull(
        model_id="a", model_path=f"{prefix}/model.onnx", model_key=_key("azure")
    )
    assert pathlib.Path(pulled.local_path).read_bytes() == b"azure" * 10
    tree = await puller.pull(model_id="t", model_path=f"{prefix}/tree", model_key=_key("azure"))
    assert (pathlib.Path(tree.local_path) / "x" / "y.bin").read_bytes() == b"y"

    await puller.release("a")
    again = await puller.pull(
        model_id="a", model_path=f"{prefix}/model.onnx", model_key=_key("azure")
    )
    assert again.from_cache
    assert azurite.request_count(key_substring=f"{prefix}/model.onnx") == 1


async def test_azure_blob_uri_names_account_and_container(
    make_puller: Any, azurite: AzuriteServer, container: str
) -> None:
    path = f"{_name('uri')}/model.onnx"
    azurite.client().get_blob_client(container, path).upload_blob(b"via-uri")
    puller = await make_puller()
    # The URI's host is never resolved: the storage key's connection string
    # points the client at Azurite.
    uri = f"https://{azurite.account_name}.blob.core.windows.net/{container}/{path}"
    pulled = await puller.pull(model_id="u", model_path=uri, model_key=_key("azure"))
    assert pathlib.Path(pulled.local_path).read_bytes() == b"via-uri"


async def test_azure_wrong_key_and_container_fail_clearly(
    make_puller: Any, azurite: AzuriteServer, container: str, secrets: list[str]
) -> None:
    path = f"{_name('denied')}/model.onnx"
    azurite.client().get_blob_client(container, path).upload_blob(b"x")
    puller = await make_puller()
    with pytest.raises(StorageAccessDeniedError) as denied:
        await puller.pull(model_id="d", model_path=path, model_key=_key("azure-wrong-key"))
    _check_error(denied.value, key="azure-wrong-key", path=path, secrets=secrets)

    with pytest.raises(ArtifactNotFoundError, match="container 'nope'") as missing:
        await puller.pull(model_id="c", model_path=path, model_key=_key("azure", container="nope"))
    _check_error(missing.value, key="azure", path=path, secrets=secrets)


# --------------------------------------------------------------------------
# GCS (fake-gcs-server)


async def test_gcs_file_tree_and_cache(make_puller: Any, gcs: GcsServer, gcs_bucket: str) -> None:
    bucket = gcs.client().bucket(gcs_bucket)
    prefix = _name("gs")
    bucket.blob(f"{prefix}/model.onnx").upload_from_string(b"gcs" * 10)
    bucket.blob(f"{prefix}/tree/a/b.bin").upload_from_string(b"b")
    puller = await make_puller()

    pulled = await puller.pull(
        model_id="g", model_path=f"{prefix}/model.onnx", model_key=_key("gcs")
    )
    assert pathlib.Path(pulled.local_path).read_bytes() == b"gcs" * 10
    tree = await puller.pull(model_id="t", model_path=f"{prefix}/tree", model_key=_key("gcs"))
    assert (pathlib.Path(tree.local_path) / "a" / "b.bin").read_bytes() == b"b"

    media = f"/download/storage/v1/b/{gcs_bucket}/o/{prefix}/model.onnx"
    assert gcs.request_count(key_substring=media) == 1
    await puller.release("g")
    again = await puller.pull(
        model_id="g", model_path=f"gs://{gcs_bucket}/{prefix}/model.onnx", model_key=_key("gcs")
    )
    assert again.from_cache
    assert gcs.request_count(key_substring=media) == 1


async def test_gcs_object_names_that_escape_are_refused(
    make_puller: Any, gcs: GcsServer, gcs_bucket: str
) -> None:
    bucket = gcs.client().bucket(gcs_bucket)
    prefix = _name("trav")
    bucket.blob(f"{prefix}/ok.bin").upload_from_string(b"ok")
    bucket.blob(f"{prefix}/../../escaped.bin").upload_from_string(b"evil")
    puller = await make_puller()
    with pytest.raises(ArtifactRejectedError, match=r"'\.\.'"):
        await puller.pull(model_id="t", model_path=prefix, model_key=_key("gcs"))
    assert not (puller.models_dir / "t").exists()
    assert not any(puller.models_dir.parent.rglob("escaped.bin"))


async def test_gcs_missing_bucket_is_not_found(make_puller: Any) -> None:
    puller = await make_puller()
    with pytest.raises(ArtifactNotFoundError, match="bucket 'absent-bucket'"):
        await puller.pull(
            model_id="x", model_path="m.onnx", model_key=_key("gcs", bucket="absent-bucket")
        )


# --------------------------------------------------------------------------
# HTTPS (trustme CA)


def _serve(https: HttpsServer, data: bytes) -> str:
    path = f"/{_name('files')}/model.onnx"
    file = https.root / path.lstrip("/")
    file.parent.mkdir(parents=True)
    file.write_bytes(data)
    return path


async def test_https_with_the_configured_ca_and_without(
    make_puller: Any, https: HttpsServer
) -> None:
    path = _serve(https, b"https-model")
    puller = await make_puller(retry_attempts=3)
    pulled = await puller.pull(model_id="h", model_path=path, model_key=_key("https"))
    assert pathlib.Path(pulled.local_path).read_bytes() == b"https-model"
    assert pathlib.Path(pulled.local_path).name == "model.onnx"

    # Verification stays on: the system CAs do not know the test CA.
    with pytest.raises(StorageError, match="TLS verification"):
        await puller.pull(model_id="n", model_path=path, model_key=_key("https-no-ca"))


async def test_https_fails_twice_then_succeeds(make_puller: Any, https: HttpsServer) -> None:
    path = _serve(https, b"flaky")
    https.fail_next(path, 2, 503)
    puller = await make_puller(retry_attempts=3)
    pulled = await puller.pull(model_id="f", model_path=path, model_key=_key("https"))
    assert pathlib.Path(pulled.local_path).read_bytes() == b"flaky"
    assert https.request_count(path, method="GET") == 1
    assert https.request_count(path) == 4  # two failed HEADs, one HEAD, one GET


async def test_https_not_found_fails_at_once(
    make_puller: Any, https: HttpsServer, secrets: list[str]
) -> None:
    puller = await make_puller(retry_attempts=4)
    path = f"/{_name('missing')}/model.onnx"
    with pytest.raises(ArtifactNotFoundError) as missing:
        await puller.pull(model_id="m", model_path=path, model_key=_key("https"))
    _check_error(missing.value, key="https", path=path, secrets=secrets)
    assert https.request_count(path) == 1


async def test_https_headers_carry_a_token_that_never_shows(
    make_puller: Any, https: HttpsServer, secrets: list[str]
) -> None:
    path = _serve(https, b"private")
    https.require_header("Authorization", HTTP_TOKEN)
    try:
        puller = await make_puller()
        pulled = await puller.pull(model_id="p", model_path=path, model_key=_key("https-token"))
        assert pathlib.Path(pulled.local_path).read_bytes() == b"private"
        with pytest.raises(StorageAccessDeniedError) as denied:
            await puller.pull(model_id="q", model_path=path, model_key=_key("https"))
        _check_error(denied.value, key="https", path=path, secrets=secrets)
    finally:
        https.clear_rules()


async def test_https_sha256_pin_and_progress(make_puller: Any, https: HttpsServer) -> None:
    data = bytes(range(256)) * (16 * MIB // 256)
    path = _serve(https, data)
    digest = hashlib.sha256(data).hexdigest()
    events: list[PullProgress] = []
    puller = await make_puller(progress=events)
    pulled = await puller.pull(
        model_id="pin", model_path=path, model_key=_key("https", sha256=digest)
    )
    await asyncio.sleep(0)
    assert pulled.bytes == 16 * MIB
    assert len(events) >= 2
    assert events[0].bytes_total == 16 * MIB

    with pytest.raises(ArtifactRejectedError, match="sha256 mismatch"):
        await puller.pull(
            model_id="bad", model_path=path, model_key=_key("https", sha256="ab" * 32)
        )
    assert not (puller.models_dir / "bad").exists()


async def test_https_mutual_tls(make_puller: Any, tmp_path: pathlib.Path) -> None:
    with run_https_server(tmp_path / "mtls", client_cert_required=True) as server:
        path = _serve(server, b"mtls")
        assert server.client_cert is not None
        pem = server.client_cert.read_text()
        # The file holds the key, then the certificate chain.
        end_marker = "PRIVATE KEY-----"
        key_end = pem.index(end_marker, pem.index("-----END")) + len(end_marker)
        entry = {
            "type": "http",
            "url": server.url,
            "certificate": server.ca_pem.read_text(),
            "client_key": pem[:key_end],
            "client_certificate": pem[key_end:].strip(),
        }
        puller = await make_puller(
            config={
                "mtls": json.dumps(entry),
                "no-cert": json.dumps(
                    {k: v for k, v in entry.items() if not k.startswith("client_")}
                ),
            }
        )
        pulled = await puller.pull(model_id="m", model_path=path, model_key=_key("mtls"))
        assert pathlib.Path(pulled.local_path).read_bytes() == b"mtls"
        # Refused handshakes are permanent: no retries.
        with pytest.raises(StorageError, match="refused the TLS handshake"):
            await puller.pull(model_id="n", model_path=path, model_key=_key("no-cert"))


# --------------------------------------------------------------------------
# pvc (a local directory standing for the mounted claim)


async def test_pvc_paths_resolve_under_the_root_and_refuse_escapes(
    make_puller: Any, tmp_path: pathlib.Path
) -> None:
    claim = tmp_path / "pvc" / "models"
    (claim / "sk").mkdir(parents=True)
    (claim / "sk" / "model.onnx").write_bytes(b"on-the-claim")
    (tmp_path / "outside.txt").write_text("not yours")
    (claim / "sk" / "escape").symlink_to(tmp_path / "outside.txt")
    puller = await make_puller(max_model_bytes=100)

    pulled = await puller.pull(model_id="p", model_path="pvc://models/sk/model.onnx", model_key="")
    assert pulled.local_path == str(claim / "sk" / "model.onnx")
    with pytest.raises(ArtifactRejectedError, match="symlink"):
        await puller.pull(model_id="s", model_path="pvc://models/sk", model_key="")
    with pytest.raises(ArtifactRejectedError, match=r"'\.\.'"):
        await puller.pull(model_id="t", model_path="pvc://models/../outside.txt", model_key="")
    (claim / "big.bin").write_bytes(b"b" * 101)
    with pytest.raises(ArtifactRejectedError, match="more than the 100"):
        await puller.pull(model_id="b", model_path="pvc://models/big.bin", model_key="")
