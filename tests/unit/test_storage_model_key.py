"""The model key's storage part, in ModelMesh Serving's JSON."""

from __future__ import annotations

import json

import pytest

from meshserve.errors import StorageConfigError
from meshserve.storage import ModelKeyInfo, build_model_key


def test_build_writes_modelmesh_field_names() -> None:
    text = build_model_key(
        model_type="sklearn",
        model_type_version="1",
        storage_key="my-s3",
        storage_params={"bucket": "models"},
        schema_path="schema.json",
    )
    assert json.loads(text) == {
        "storage_key": "my-s3",
        "storage_params": {"bucket": "models"},
        "model_type": {"name": "sklearn", "version": "1"},
        "schema_path": "schema.json",
    }


def test_parse_round_trips_and_keeps_unknown_fields() -> None:
    text = json.dumps(
        {
            "storage_key": "k",
            "storage_params": {"type": "s3", "bucket": "b"},
            "model_type": {"name": "onnx"},
            "disk_size_bytes": 12,
            "future_field": [1],
        }
    )
    key = ModelKeyInfo.parse(text)
    assert key.storage_key == "k"
    assert key.storage_params == {"type": "s3", "bucket": "b"}
    assert key.model_type == "onnx"
    assert key.disk_size_bytes == 12
    assert key.uses_storage
    assert json.loads(key.to_json()) == json.loads(text)


def test_empty_and_type_only_keys_use_no_storage() -> None:
    assert not ModelKeyInfo.parse("").uses_storage
    only_type = ModelKeyInfo.parse('{"model_type": "sklearn"}')
    assert only_type.model_type == "sklearn"
    assert not only_type.uses_storage


def test_the_deprecated_top_level_bucket_becomes_a_parameter() -> None:
    key = ModelKeyInfo.parse('{"storage_key": "k", "bucket": "old"}')
    assert key.storage_params == {"bucket": "old"}


@pytest.mark.parametrize(
    "text", ["not json", "[1]", '{"storage_params": [1]}', '{"model_type": 3}']
)
def test_malformed_keys_are_config_errors(text: str) -> None:
    with pytest.raises(StorageConfigError):
        ModelKeyInfo.parse(text)


@pytest.mark.parametrize("field", ["secret_access_key", "access_key_id", "client_secret"])
def test_credentials_never_enter_a_key(field: str) -> None:
    with pytest.raises(StorageConfigError, match=field) as info:
        build_model_key(storage_key="k", storage_params={field: "hunter2"})
    assert "hunter2" not in str(info.value)
