"""storage-config: parsing, lookup with defaults, overrides, reloads, secrecy."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from meshserve.errors import StorageConfigError
from meshserve.storage import (
    AzureConfig,
    GcsConfig,
    HttpConfig,
    PvcConfig,
    S3Config,
    StorageConfig,
    StorageSettings,
)

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"

S3_ENTRY = {
    "type": "s3",
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": SECRET,
    "endpoint_url": "http://127.0.0.1:9000",
    "region": "us-south",
    "default_bucket": "models",
}


def _entries() -> dict[str, str]:
    return {
        "my-s3": json.dumps(S3_ENTRY),
        "default": json.dumps({"type": "s3", "bucket": "fallback", "region": "eu"}),
        "default_gcs": json.dumps({"type": "gcs", "bucket": "gbucket"}),
        "azure": json.dumps(
            {"type": "azure", "account_name": "acct", "container": "c", "client_id": "x"}
        ),
        "web": json.dumps({"type": "http", "url": "https://example.test/m", "headers": {"A": "b"}}),
        "claim": json.dumps({"type": "pvc", "name": "models-pvc"}),
    }


def test_each_provider_type_parses_with_its_fields() -> None:
    config = StorageConfig.from_mapping(_entries())
    s3 = config.get("my-s3")
    assert isinstance(s3, S3Config)
    assert s3.bucket_name == "models"
    assert s3.endpoint_url == "http://127.0.0.1:9000"
    assert s3.secret_access_key is not None
    assert s3.secret_access_key.get_secret_value() == SECRET
    assert isinstance(config.get("default_gcs"), GcsConfig)
    assert isinstance(config.get("azure"), AzureConfig)
    web = config.get("web")
    assert isinstance(web, HttpConfig)
    assert web.headers["A"].get_secret_value() == "b"
    claim = config.get("claim")
    assert isinstance(claim, PvcConfig)
    assert claim.name == "models-pvc"


def test_credentials_never_show_in_repr_or_str() -> None:
    config = StorageConfig.from_mapping(_entries())
    s3 = config.get("my-s3")
    for text in (
        repr(s3),
        str(s3),
        repr(config),
        str(config),
        repr(config.resolve(storage_key="my-s3", params={})),
    ):
        assert SECRET not in text
        assert "AKIAEXAMPLE" not in text
    assert "my-s3" in repr(config)


def test_storage_params_override_the_entry() -> None:
    config = StorageConfig.from_mapping(_entries())
    resolved = config.resolve(storage_key="my-s3", params={"bucket": "other", "sha256": "ab"})
    assert resolved.key == "my-s3"
    assert isinstance(resolved.config, S3Config)
    assert resolved.config.bucket_name == "other"
    assert resolved.config.region == "us-south"


def test_no_key_uses_default_of_the_type_then_default() -> None:
    config = StorageConfig.from_mapping(_entries())
    typed = config.resolve(storage_key=None, params={"type": "gcs", "bucket": "b2"})
    assert typed.key == "default_gcs"
    assert isinstance(typed.config, GcsConfig)
    assert typed.config.bucket == "b2"
    untyped = config.resolve(storage_key=None, params={"bucket": "x"})
    assert untyped.key == "default"
    # `default` is s3: it must not serve an azure request.
    only_params = config.resolve(
        storage_key=None, params={"type": "azure", "account_name": "a", "container": "c"}
    )
    assert only_params.key == ""
    assert isinstance(only_params.config, AzureConfig)


def test_params_alone_suffice_without_any_config() -> None:
    resolved = StorageConfig.empty().resolve(
        storage_key=None, params={"type": "pvc", "name": "claim"}
    )
    assert resolved.key == ""
    assert isinstance(resolved.config, PvcConfig)


def test_unknown_key_is_an_error_naming_the_key() -> None:
    config = StorageConfig.from_mapping(_entries())
    with pytest.raises(StorageConfigError, match="'nope'"):
        config.resolve(storage_key="nope", params={})


def test_no_type_anywhere_is_an_error() -> None:
    with pytest.raises(StorageConfigError, match="no storage type"):
        StorageConfig.empty().resolve(storage_key=None, params={"bucket": "b"})


@pytest.mark.parametrize("field", ["secret_access_key", "connection_string", "private_key"])
def test_credentials_in_params_are_refused(field: str) -> None:
    config = StorageConfig.from_mapping(_entries())
    with pytest.raises(StorageConfigError, match=field) as info:
        config.resolve(storage_key="my-s3", params={field: "leak-me"})
    assert "leak-me" not in str(info.value)


def test_an_invalid_entry_fails_alone_without_quoting_it() -> None:
    entries = _entries()
    entries["broken"] = '{"type": "s3", "secret_access_key": "' + SECRET
    entries["wrongtype"] = json.dumps({"type": "ftp"})
    entries["badfield"] = json.dumps({"type": "s3", "secret_access_key": 12, "region": [SECRET]})
    config = StorageConfig.from_mapping(entries)
    assert isinstance(config.get("my-s3"), S3Config)
    for key in ("broken", "wrongtype", "badfield"):
        with pytest.raises(StorageConfigError, match=f"'{key}'") as info:
            config.get(key)
        assert SECRET not in str(info.value)


def test_read_from_a_yaml_file_and_reread_when_it_changes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "storage-config.yaml"
    path.write_text(f"my-s3: '{json.dumps(S3_ENTRY)}'\n")
    config = StorageConfig.from_path(path)
    assert config.keys() == ["my-s3"]
    entry = dict(S3_ENTRY, region="changed")
    path.write_text(f"my-s3: '{json.dumps(entry)}'\nclaim:\n  type: pvc\n  name: c\n")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert sorted(config.keys()) == ["claim", "my-s3"]
    s3 = config.get("my-s3")
    assert isinstance(s3, S3Config)
    assert s3.region == "changed"


def test_a_broken_rewrite_keeps_the_last_good_config(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "storage-config.json"
    path.write_text(json.dumps({"my-s3": json.dumps(S3_ENTRY)}))
    config = StorageConfig.from_path(path)
    path.write_text("[1, 2")
    os.utime(path, ns=(1, 2_000_000_000_000_000_000))
    assert config.keys() == ["my-s3"]


def test_a_secret_manifest_is_read_by_its_string_data(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: storage-config\n"
        f"stringData:\n  my-s3: '{json.dumps(S3_ENTRY)}'\n"
    )
    assert StorageConfig.from_path(path).keys() == ["my-s3"]


def test_read_from_a_mounted_secret_directory(tmp_path: pathlib.Path) -> None:
    # A mounted Secret: files are symlinks into ..data, swapped atomically.
    mount = tmp_path / "storage-config"
    mount.mkdir()
    first = mount / "..2024_01_01"
    first.mkdir()
    (first / "my-s3").write_text(json.dumps(S3_ENTRY))
    (mount / "..data").symlink_to(first.name)
    (mount / "my-s3").symlink_to("..data/my-s3")
    config = StorageConfig.from_path(mount)
    assert config.keys() == ["my-s3"]

    second = mount / "..2024_01_02"
    second.mkdir()
    (second / "my-s3").write_text(json.dumps(dict(S3_ENTRY, region="r2")))
    (second / "claim").write_text(json.dumps({"type": "pvc", "name": "c"}))
    (mount / "..data_tmp").symlink_to(second.name)
    os.replace(mount / "..data_tmp", mount / "..data")
    (mount / "claim").symlink_to("..data/claim")
    assert sorted(config.keys()) == ["claim", "my-s3"]
    s3 = config.get("my-s3")
    assert isinstance(s3, S3Config)
    assert s3.region == "r2"


def test_a_missing_path_reads_as_empty_until_it_appears(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "later.yaml"
    config = StorageConfig.from_path(path)
    assert config.keys() == []
    path.write_text(f"my-s3: '{json.dumps(S3_ENTRY)}'\n")
    assert config.keys() == ["my-s3"]


def test_settings_accept_camel_case_and_check_backoff() -> None:
    settings = StorageSettings.model_validate({"pvcRoot": "/pvc", "cacheMaxBytes": 5})
    assert settings.pvc_root == pathlib.Path("/pvc")
    assert settings.cache_max_bytes == 5
    with pytest.raises(ValueError, match="retry_max_backoff_s"):
        StorageSettings(retry_initial_backoff_s=5, retry_max_backoff_s=1)
