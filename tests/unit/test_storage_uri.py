"""Storage URIs -> parameters and path (no name is resolved)."""

from __future__ import annotations

import pytest

from meshserve.errors import StorageConfigError
from meshserve.storage import StorageType, is_storage_uri, parse_storage_uri


@pytest.mark.parametrize(
    ("uri", "kind", "path", "params"),
    [
        ("s3://models/sk/iris.onnx", StorageType.S3, "sk/iris.onnx", {"bucket": "models"}),
        ("s3://Models-1/dir/", StorageType.S3, "dir/", {"bucket": "Models-1"}),
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
        ("s3://key:secret@bucket/p", "credentials"),
        ("https://user:pw@files.example.test/m", "credentials"),
        ("https://h.test/m?X-Amz-Signature=abc&X-Amz-Credential=x", "signature"),
        ("https://acct.blob.core.windows.net/c/m?sv=1&sig=abc", "signature"),
        ("ftp://host/m", "not supported"),
        ("s3:///path", "no bucket"),
        ("https://.blob.core.windows.net/c/p", "account"),
        ("https://acct.blob.core.windows.net/", "account"),
        ("/models/iris.onnx", "no scheme"),
    ],
)
def test_unusable_uris_are_refused(uri: str, reason: str) -> None:
    with pytest.raises(StorageConfigError, match=reason) as info:
        parse_storage_uri(uri)
    assert "secret" not in str(info.value) or reason != "credentials"


@pytest.mark.parametrize("text", ["/models/iris.onnx", "models/iris.onnx", "C:\\m", ""])
def test_local_paths_are_not_storage_uris(text: str) -> None:
    assert not is_storage_uri(text)
