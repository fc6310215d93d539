"""The model key's storage part, in ModelMesh Serving's JSON."""

from __future__ import annotations

import json

import pytest

from meshserve.errors import StorageConfigError, UnsupportedModelError
from meshserve.protocol.model_key import ModelKey
from meshserve.runtime import ModelSpec, resolve_model_type
from meshserve.storage import build_model_key


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
    key = ModelKey.parse(text)
    assert key.storage_key == "k"
    assert key.storage_params == {"type": "s3", "bucket": "b"}
    assert key.model_type == "onnx"
    assert key.disk_size_bytes == 12
    assert key.uses_storage
    assert json.loads(key.to_json()) == json.loads(text)


def test_empty_and_type_only_keys_use_no_storage() -> None:
    assert not ModelKey.parse("").uses_storage
    only_type = ModelKey.parse('{"model_type": "sklearn"}')
    assert only_type.model_type == "sklearn"
    assert not only_type.uses_storage


def test_the_deprecated_top_level_bucket_becomes_a_parameter() -> None:
    key = ModelKey.parse('{"storage_key": "k", "bucket": "old"}')
    assert key.storage_params == {"bucket": "old"}


@pytest.mark.parametrize(
    "text", ["not json", "[1]", '{"storage_params": [1]}', '{"model_type": 3}']
)
def test_malformed_keys_are_config_errors(text: str) -> None:
    with pytest.raises(StorageConfigError):
        ModelKey.parse(text)


@pytest.mark.parametrize("field", ["secret_access_key", "access_key_id", "client_secret"])
def test_credentials_never_enter_a_key(field: str) -> None:
    with pytest.raises(StorageConfigError, match=field) as info:
        build_model_key(storage_key="k", storage_params={field: "hunter2"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("text", ["not json", '{"model_type": 3}', '{"disk_size_bytes": "x"}'])
def test_a_runtime_reads_the_same_key_and_calls_a_malformed_one_unsupported(text: str) -> None:
    # One parser for the storage side and the runtime side; the runtime
    # reports its own error type (a load refused before it started).
    spec = ModelSpec(model_id="m", model_type="mt:sklearn", model_path="/x", model_key=text)
    with pytest.raises(UnsupportedModelError, match="model key"):
        resolve_model_type(spec)


def test_a_runtime_reads_the_format_from_the_key() -> None:
    key = build_model_key(model_type="ONNX", storage_key="k")
    spec = ModelSpec(model_id="m", model_type="mt:sklearn", model_path="/x", model_key=key)
    assert resolve_model_type(spec) == "onnx"
