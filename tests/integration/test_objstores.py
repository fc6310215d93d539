"""The object-store test servers themselves: each stores and serves what a
client uploads, counts the requests, and (S3, Azure) refuses bad credentials."""

from __future__ import annotations

import http.client
import io
import pathlib
import socket
import ssl
import uuid
from collections.abc import Iterator

import boto3
import boto3.s3.transfer
import botocore.config
import botocore.exceptions
import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient

from tests.integration._counting_proxy import RequestLog, RequestStream
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


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _refuses_connections(url: str) -> bool:
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    try:
        socket.create_connection((host, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    return False


# --------------------------------------------------------------------------
# The counting proxy's request parser


def test_request_stream_finds_pipelined_requests_across_bodies() -> None:
    log = RequestLog()
    stream = RequestStream(log.add)
    wire = (
        b"PUT /b/k%20one HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nGET / HTTP/"
        b"PUT /b/k2?uploadId=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nGET /\r\n3\r\nabc\r\n0\r\nx-checksum: 1\r\n\r\n"
        b"HEAD /b/k3 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    # Bodies that look like requests must not count; splits fall anywhere.
    for at in range(0, len(wire), 7):
        stream.feed(wire[at : at + 7])
    assert [(r.method, r.path, r.target) for r in log.records()] == [
        ("PUT", "/b/k one", "/b/k%20one"),
        ("PUT", "/b/k2", "/b/k2?uploadId=1"),
        ("HEAD", "/b/k3", "/b/k3"),
    ]
    assert log.count(method="PUT", path_substring="k") == 2
    assert log.count(method=None, path_substring="/b/") == 3


# --------------------------------------------------------------------------
# S3 (SeaweedFS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="module")
def s3_bucket(s3: S3Server) -> str:
    bucket = _name("bkt")
    s3.client().create_bucket(Bucket=bucket)
    return bucket


def test_s3_round_trip_is_counted(s3: S3Server, s3_bucket: str) -> None:
    client = s3.client()
    key = f"{_name('model')}/weights.bin"
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"weights")
    assert s3.request_count(key_substring=key) == 0
    assert s3.request_count(method="PUT", key_substring=key) == 1

    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == b"weights"
    assert client.head_object(Bucket=s3_bucket, Key=key)["ContentLength"] == 7
    assert client.get_object(Bucket=s3_bucket, Key=key, Range="bytes=2-4")["Body"].read() == b"igh"
    assert s3.request_count(key_substring=key) == 2
    assert s3.request_count(method="HEAD", key_substring=key) == 1
    assert s3.request_count(method=None, key_substring=key) == 4


def test_s3_multipart_upload_goes_through_the_proxy(s3: S3Server, s3_bucket: str) -> None:
    client = s3.client()
    key = f"{_name('model')}/big.bin"
    data = bytes(range(256)) * (6 * MIB // 256)
    config = boto3.s3.transfer.TransferConfig(
        multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2
    )
    client.upload_fileobj(io.BytesIO(data), s3_bucket, key, Config=config)
    # Initiate, two parts, complete: the part bodies did not derail counting.
    assert s3.request_count(method="POST", key_substring=key) == 2
    assert s3.request_count(method="PUT", key_substring=key) == 2

    assert client.get_object(Bucket=s3_bucket, Key=key)["Body"].read() == data
    assert s3.request_count(key_substring=key) == 1


def test_s3_wrong_secret_is_refused(s3: S3Server, s3_bucket: str) -> None:
    key = _name("secret")
    s3.client().put_object(Bucket=s3_bucket, Key=key, Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        s3.client(secret_access_key="not-the-secret").get_object(Bucket=s3_bucket, Key=key)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_s3_unknown_access_key_is_refused(s3: S3Server, s3_bucket: str) -> None:
    stranger = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id="stranger",
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
        config=botocore.config.Config(s3={"addressing_style": "path"}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        stranger.list_objects_v2(Bucket=s3_bucket)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"


# --------------------------------------------------------------------------
# Azure Blob (Azurite)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with run_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="module")
def container(azurite: AzuriteServer) -> str:
    name = _name("cont")
    azurite.client().create_container(name)
    return name


def test_azure_round_trip_is_counted(azurite: AzuriteServer, container: str) -> None:
    blob = azurite.client().get_blob_client(container, f"{_name('model')}/weights.bin")
    blob.upload_blob(b"weights")
    assert azurite.request_count(key_substring=blob.blob_name) == 0
    assert azurite.request_count(method="PUT", key_substring=blob.blob_name) == 1

    assert blob.download_blob().readall() == b"weights"
    assert blob.download_blob(offset=2, length=3).readall() == b"igh"
    assert blob.get_blob_properties().size == 7
    assert azurite.request_count(key_substring=blob.blob_name) == 2
    assert azurite.request_count(method="HEAD", key_substring=blob.blob_name) == 1


def test_azure_block_upload_goes_through_the_proxy(azurite: AzuriteServer, container: str) -> None:
    name = f"{_name('model')}/blocks.bin"
    data = bytes(range(256)) * 16
    staged = BlobClient.from_connection_string(
        azurite.connection_string,
        container,
        name,
        max_single_put_size=1024,
        max_block_size=1024,
    )
    staged.upload_blob(data, max_concurrency=1)
    # Four blocks and the block list.
    assert azurite.request_count(method="PUT", key_substring=name) == 5
    assert azurite.client().get_blob_client(container, name).download_blob().readall() == data


def test_azure_wrong_key_is_refused(azurite: AzuriteServer, container: str) -> None:
    name = _name("secret")
    azurite.client().get_blob_client(container, name).upload_blob(b"x")
    wrong_key = "d3Jvbmc=" * 11
    with pytest.raises(HttpResponseError) as refused:
        azurite.client(account_key=wrong_key).get_blob_client(
            container, name
        ).download_blob().readall()
    assert refused.value.status_code == 403
    assert "AuthorizationFailure" in str(refused.value)


# --------------------------------------------------------------------------
# GCS (fake-gcs-server)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsServer]:
    with run_fake_gcs(tmp_path_factory.mktemp("fake-gcs")) as server:
        yield server


def test_gcs_round_trip_is_counted(gcs: GcsServer) -> None:
    bucket = gcs.client().create_bucket(_name("bkt"))
    key = f"{_name('model')}/weights.bin"
    bucket.blob(key).upload_from_string(b"weights")
    assert gcs.request_count(key_substring=key) == 0

    assert bucket.blob(key).download_as_bytes() == b"weights"
    assert bucket.blob(key).download_as_bytes(start=2, end=4) == b"igh"
    assert gcs.request_count(key_substring=key) == 2


def test_gcs_resumable_upload_goes_through_the_proxy(gcs: GcsServer) -> None:
    bucket = gcs.client().create_bucket(_name("bkt"))
    key = f"{_name('model')}/big.bin"
    data = bytes(range(256)) * (600 * 1024 // 256)
    blob = bucket.blob(key, chunk_size=256 * 1024)
    # No size: google-cloud-storage would send up to 8 MiB in one multipart POST.
    blob.upload_from_file(io.BytesIO(data))
    # Three chunks, each PUT to the session URL the server handed out,
    # which must name the proxy (-external-url) for them to show up here.
    assert gcs.request_count(method="PUT", key_substring=f"/upload/storage/v1/b/{bucket.name}") == 3
    assert bucket.blob(key).download_as_bytes() == data


def test_gcs_server_is_gone_after_exit(tmp_path: pathlib.Path) -> None:
    with run_fake_gcs(tmp_path) as server:
        assert list(server.client().list_buckets()) == []
    assert _refuses_connections(server.endpoint_url)


# --------------------------------------------------------------------------
# HTTPS file server


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsServer]:
    with run_https_server(tmp_path_factory.mktemp("https")) as server:
        (server.root / "models").mkdir()
        (server.root / "models" / "weights.bin").write_bytes(b"0123456789")
        yield server


@pytest.fixture
def https_client(https: HttpsServer) -> Iterator[httpx.Client]:
    https.clear_rules()
    with httpx.Client(base_url=https.url, verify=https.ssl_context()) as client:
        yield client


def test_https_serves_files_with_length_and_etag(
    https: HttpsServer, https_client: httpx.Client
) -> None:
    before = https.request_count("/models/weights.bin")
    head_before = https.request_count("/models/weights.bin", method="HEAD")
    response = https_client.get("/models/weights.bin")
    assert response.status_code == 200
    assert response.content == b"0123456789"
    assert response.headers["Content-Length"] == "10"
    etag = response.headers["ETag"]

    head = https_client.head("/models/weights.bin")
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "10", b"")
    assert head.headers["ETag"] == etag
    unchanged = https_client.get("/models/weights.bin", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    ranged = https_client.get("/models/weights.bin", headers={"Range": "bytes=3-5"})
    assert (ranged.status_code, ranged.content) == (206, b"345")
    assert ranged.headers["Content-Range"] == "bytes 3-5/10"
    assert https_client.get("/models/missing.bin").status_code == 404

    assert https.request_count("/models/weights.bin") == before + 4
    assert https.request_count("/models/weights.bin", method="HEAD") == head_before + 1


def test_https_does_not_serve_outside_its_root(https: HttpsServer) -> None:
    assert (https.ca_pem.parent / "ca.pem").exists()
    connection = http.client.HTTPSConnection(
        "127.0.0.1", httpx.URL(https.url).port, context=https.ssl_context()
    )
    try:
        connection.request("GET", "/%2e%2e/ca.pem")
        assert connection.getresponse().status == 404
    finally:
        connection.close()


def test_https_fails_as_told_then_recovers(https: HttpsServer, https_client: httpx.Client) -> None:
    before = https.request_count("/models/weights.bin")
    https.fail_next("/models/weights.bin", 2, status=503)
    statuses = [https_client.get("/models/weights.bin").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert https.request_count("/models/weights.bin") == before + 3


def test_https_requires_the_header_it_was_given(
    https: HttpsServer, https_client: httpx.Client
) -> None:
    https.require_header("Authorization", "Bearer sesame")
    assert https_client.get("/models/weights.bin").status_code == 401
    wrong = {"Authorization": "Bearer guess"}
    assert https_client.get("/models/weights.bin", headers=wrong).status_code == 401
    right = {"Authorization": "Bearer sesame"}
    assert https_client.get("/models/weights.bin", headers=right).content == b"0123456789"


def test_https_is_trusted_only_through_its_ca(https: HttpsServer) -> None:
    with (
        httpx.Client(verify=ssl.create_default_context()) as client,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.get(f"{https.url}/models/weights.bin")


def test_https_client_certificate_is_required_when_asked(tmp_path: pathlib.Path) -> None:
    with run_https_server(tmp_path, client_cert_required=True) as server:
        (server.root / "f.bin").write_bytes(b"ok")
        assert server.client_cert is not None
        with httpx.Client(verify=server.ssl_context()) as client:
            assert client.get(f"{server.url}/f.bin").content == b"ok"
        anonymous = ssl.create_default_context(cafile=str(server.ca_pem))
        with httpx.Client(verify=anonymous) as client, pytest.raises(httpx.HTTPError):
            client.get(f"{server.url}/f.bin")
    assert _refuses_connections(server.url)
