"""Storage URIs -> parameters and path, with one parser for resources,
registrations and pulls; URIs that carry credentials are refused without
being echoed, and redacted wherever they are shown."""

from __future__ import annotations

import pytest

from meshserve import resources
from meshserve.errors import InvalidRequestError
from meshserve.storage import StorageType, is_storage_uri, parse_storage_uri

SECRET = "S3CR3Tvalue"


@pytest.mark.parametrize(
    ("uri", "kind", "path", "params"),
    [
        ("s3://models/sk/iris.onnx", StorageType.S3, "sk/iris.onnx", {"bucket": "models"}),
        ("s3://Models-1/dir/", StorageType.S3, "dir/", {"bucket": "Models-1"}),
        ("S3://models/a%20b", StorageType.S3, "a b", {"bucket": "models"}),
        ("gs://gbucket/a/b", StorageType.GCS, "a/b", {"bucket": "gbucket"}),
        ("pvc://my-claim/m/model.bst", StorageType.PVC, "m/model.bst", {"name": "my-claim"}),
        (
            "https://acct1.blob.core.windows.net/container/path/to/model",
            StorageType.AZURE,
            "path/to/model",
            {"account_name": "acct1", "container": "container"},
        ),
        (
            "https://acct1.blob.core.windows.net/container",
            StorageType.AZURE,
            "",
            {"account_name": "acct1", "container": "container"},
        ),
        (
            "https://files.example.test/models/m.onnx",
            StorageType.HTTP,
            "",
            {"url": "https://files.example.test/models/m.onnx"},
        ),
        (
            "http://127.0.0.1:8080/m.onnx?version=2",
            StorageType.HTTP,
            "",
            {"url": "http://127.0.0.1:8080/m.onnx?version=2"},
        ),
    ],
)
def test_uris_map_as_modelmesh_serving_maps_them(
    uri: str, kind: StorageType, path: str, params: dict[str, str]
) -> None:
    ref = parse_storage_uri(uri)
    assert ref.type is kind
    assert ref.path == path
    assert ref.params == {"type": kind.value, **params}
    assert is_storage_uri(uri)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("ftp://host/m", "not supported"),
        ("s3:///path", "no bucket"),
        ("pvc:///path", "no bucket or claim"),
        ("https:///path", "no host"),
        ("https://.blob.core.windows.net/c/p", "account"),
        ("https://acct.blob.core.windows.net/", "account"),
        ("/models/iris.onnx", "no scheme"),
        ("https://[::1/m", "malformed"),
    ],
)
def test_unusable_uris_are_refused(uri: str, reason: str) -> None:
    with pytest.raises(InvalidRequestError, match=reason):
        parse_storage_uri(uri)


# Every way a credential rides in a URI that the attack and the issue named,
# and a few more of the same families.
CREDENTIAL_URIS = [
    (f"s3://AKIAKEY:{SECRET}@bucket/m", "user credentials"),
    (f"s3://{SECRET}@bucket/m", "user credentials"),
    (f"gs://user:{SECRET}@bucket/m", "user credentials"),
    (f"pvc://u:{SECRET}@claim/m", "user credentials"),
    (f"https://user:{SECRET}@files.example.test/m.onnx", "user credentials"),
    (f"https://{SECRET}@files.example.test/m.onnx", "user credentials"),
    (f"https://user:{SECRET}@acct.blob.core.windows.net/c/m", "user credentials"),
    (f"https://user%3A{SECRET}%40files.example.test/m", "percent-escapes"),
    (f"https://h.test/m?X-Amz-Signature={SECRET}&X-Amz-Credential=AKIA", "signature"),
    (f"https://h.test/m?X-Amz-Credential={SECRET}", "signature"),
    (f"https://h.test/m?X-Amz-Security-Token={SECRET}", "signature"),
    (f"https://storage.googleapis.test/b/m?X-Goog-Signature={SECRET}", "signature"),
    (f"https://h.test/m?GoogleAccessId=x&Signature={SECRET}", "signature"),
    (f"https://h.test/m?AWSAccessKeyId=AKIA&Signature={SECRET}&Expires=1", "signature"),
    (f"https://acct.blob.core.windows.net/c/m?sv=2022-11-02&sig={SECRET}", "signature"),
    (f"https://acct.blob.core.windows.net/c/m?sv=2022-11-02&se={SECRET}", "signature"),
    (f"https://h.test/m?token={SECRET}", "signature"),
    (f"https://h.test/m?access_token={SECRET}", "signature"),
    (f"https://h.test/m?id_token={SECRET}", "signature"),
    (f"https://h.test/m?api_key={SECRET}", "signature"),
    (f"https://h.test/m?x-api-key={SECRET}", "signature"),
    (f"https://h.test/m?apikey={SECRET}", "signature"),
    (f"https://h.test/m?password={SECRET}", "signature"),
    (f"https://h.test/m?client_secret={SECRET}", "signature"),
    (f"https://h.test/m?Policy=p&Key-Pair-Id=k&Signature={SECRET}", "signature"),
    (f"https://h.test/m?auth={SECRET}", "signature"),
    (f"https://h.test/m?v=1&x=eyJhbGciOiJIUzI1NiJ9.eyJ{SECRET}.c2ln", "signature"),
    (f"https://h.test/m?{SECRET}token", "signature"),
    (f"https://h.test/m#access_token={SECRET}", "fragment"),
    (f"https://h.test/m#{SECRET}", "fragment"),
    (f"s3://bucket/m?X-Amz-Signature={SECRET}", "take no query"),
    (f"s3://bucket/m?versionId={SECRET}", "take no query"),
    (f"gs://bucket/m#{SECRET}", "fragment"),
]


@pytest.mark.parametrize(("uri", "reason"), CREDENTIAL_URIS)
def test_a_uri_carrying_a_credential_is_refused_without_echoing_it(uri: str, reason: str) -> None:
    with pytest.raises(InvalidRequestError, match=reason) as info:
        parse_storage_uri(uri)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value)
    # The same rules wherever a URI may hide (a path, a parameter value).
    with pytest.raises(InvalidRequestError) as again:
        resources.check_no_credentials(uri)
    assert SECRET not in str(again.value)


@pytest.mark.parametrize(
    "text",
    [
        "https://h.test/m.onnx?version=2&format=onnx",
        "s3://bucket/path/model",
        "/srv/models/iris.onnx",
        "relative/path",
        "",
    ],
)
def test_text_without_credentials_passes_the_check(text: str) -> None:
    resources.check_no_credentials(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"s3://KEY:{SECRET}@bucket/p", "s3://***@bucket/p"),
        (f"https://h.test/m?sig={SECRET}", "https://h.test/m?***"),
        (f"https://h.test/m#access_token={SECRET}", "https://h.test/m#***"),
        ("https://h.test/m", "https://h.test/m"),
        ("/srv/models/m", "/srv/models/m"),
        (
            f"load failed: 'https://u:{SECRET}@h.test/m?a={SECRET}' not found",
            "load failed: 'https://***@h.test/m?***' not found",
        ),
    ],
)
def test_redaction_masks_user_info_query_and_fragment(text: str, shown: str) -> None:
    assert resources.redact_uris(text) == shown
    assert SECRET not in resources.redact_uris(text)


@pytest.mark.parametrize("text", ["/models/iris.onnx", "models/iris.onnx", "C:\\m", "", "ftp:x"])
def test_local_paths_are_not_storage_uris(text: str) -> None:
    assert not is_storage_uri(text)
