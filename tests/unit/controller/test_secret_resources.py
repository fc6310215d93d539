"""Secrets as resources: parsed, sealed into the store, shown without values,
unsealed for the puller, and used by pulls in the model's namespace."""

from __future__ import annotations

import base64
import json
import logging
import pathlib
from collections.abc import AsyncIterator

import pytest

from meshserve._serving_config import read_serving_config
from meshserve.controller import ResourceKey, ResourceStore, SealedSecrets, redact_secret
from meshserve.errors import InvalidResourceError, StorageConfigError
from meshserve.resources import SEALED_DATA_FIELD, Secret, parse_resource
from meshserve.security import SealingKey, SealingKeyError
from meshserve.storage import (
    FileSink,
    Listing,
    ProviderConfig,
    Puller,
    RemoteObject,
    S3Config,
    SecretEntries,
    StorageConfig,
    StorageSettings,
    build_model_key,
)
from meshserve.storage._paths import safe_relative_path
from meshserve.store import SqliteStore

SECRET_VALUE = "sealed-credential-that-must-not-leak"
ENTRY = {
    "type": "s3",
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": SECRET_VALUE,
    "endpoint_url": "http://127.0.0.1:9",
    "bucket": "models",
}
ENTRY_BASE64 = base64.b64encode(json.dumps(ENTRY).encode()).decode()
PLAIN = json.dumps({"type": "http", "url": "https://example.test"})


def _secret(
    *, name: str = "storage-config", namespace: str = "default", entry: dict[str, str] = ENTRY
) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {"s3": base64.b64encode(json.dumps(entry).encode()).decode()},
        "stringData": {"plain": PLAIN},
    }


# -- the resource --------------------------------------------------------------


def test_a_secret_parses_with_string_data_over_data() -> None:
    document = _secret()
    document["stringData"] = {"s3": '{"type": "gcs"}'}
    secret = parse_resource(document)
    assert isinstance(secret, Secret)
    assert secret.items() == {"s3": b'{"type": "gcs"}'}
    assert SECRET_VALUE not in repr(secret)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"data": {"s3": "not base64 " + SECRET_VALUE}}, "data", "key 's3': not valid base64"),
        ({"stringData": {"a/b": "x"}}, "stringData", "key 'a/b' must be"),
        ({SEALED_DATA_FIELD: {"s3": "ms1:x:y"}}, "", "give the values in data or stringData"),
        ({"apiVersion": "v2"}, "apiVersion", "'v1'"),
    ],
)
def test_a_malformed_secret_is_refused_without_quoting_a_value(
    change: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidResourceError, match=message) as info:
        parse_resource({**_secret(), **change})
    assert info.value.field == field or not field
    assert SECRET_VALUE not in str(info.value)


def test_storage_secret_name_maps_onto_the_secret_name_too(tmp_path: pathlib.Path) -> None:
    serving = read_serving_config({"storageSecretName": "my-storage"}, base_dir=tmp_path)
    assert serving.values["storage"] == {
        "config_path": tmp_path / "my-storage",
        "secret_name": "my-storage",
    }
    assert StorageSettings().secret_name == "storage-config"


# -- in the store ----------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: pathlib.Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore.open(tmp_path / "store.db") as opened:
        yield opened


@pytest.fixture
def key() -> SealingKey:
    return SealingKey.generate()


async def _raw(store: SqliteStore) -> bytes:
    result = await store.range("")
    return b"".join(kv.key.encode() + kv.value for kv in result.kvs)


async def test_a_secret_is_stored_sealed_and_shown_by_key_and_length(
    store: SqliteStore, key: SealingKey
) -> None:
    resources = ResourceStore(store, sealing_key=key)
    stored_key = await resources.put(_secret())
    assert stored_key == ResourceKey("Secret", "default", "storage-config")
    raw = await _raw(store)
    assert SECRET_VALUE.encode() not in raw
    assert ENTRY_BASE64.encode() not in raw
    assert b"example.test" not in raw
    document = await resources.get(stored_key)
    assert document is not None
    assert set(document) == {"apiVersion", "kind", "metadata", "type", SEALED_DATA_FIELD}
    shown = redact_secret(document)
    assert shown["data"] == {
        "plain": f"<sealed, {len(PLAIN)} bytes>",
        "s3": f"<sealed, {len(json.dumps(ENTRY))} bytes>",
    }
    assert SEALED_DATA_FIELD not in shown


async def test_a_secret_is_not_stored_without_a_key(store: SqliteStore) -> None:
    with pytest.raises(SealingKeyError, match=r"secret 'default/storage-config'.*no sealing key"):
        await ResourceStore(store).put(_secret())
    assert await _raw(store) == b""


async def test_the_reader_unseals_the_secret_of_a_namespace(
    store: SqliteStore, key: SealingKey, caplog: pytest.LogCaptureFixture
) -> None:
    resources = ResourceStore(store, sealing_key=key)
    await resources.put(_secret(namespace="team-a"))
    reader = SealedSecrets(resources, sealing_key=key)
    with caplog.at_level(logging.DEBUG):
        entries = await reader.read_secret(namespace="team-a", name="storage-config")
        await reader.read_secret(namespace="team-a", name="storage-config")
    assert entries is not None
    assert entries.origin == "secret 'team-a/storage-config'"
    assert json.loads(entries.values["s3"]) == ENTRY
    assert entries.unreadable == {}
    assert await reader.read_secret(namespace="default", name="storage-config") is None
    messages = [r.getMessage() for r in caplog.records if "storage config read" in r.getMessage()]
    assert messages == [
        "storage config read from secret 'team-a/storage-config': keys ['plain', 's3']"
    ]
    assert SECRET_VALUE not in caplog.text


async def test_another_key_or_none_names_the_secret_and_key_not_the_value(
    store: SqliteStore, key: SealingKey
) -> None:
    resources = ResourceStore(store, sealing_key=key)
    await resources.put(_secret())
    for reader_key, reason in (
        (SealingKey.generate(), "another sealing key"),
        (None, "no sealing key"),
    ):
        reader = SealedSecrets(resources, sealing_key=reader_key)
        entries = await reader.read_secret(namespace="default", name="storage-config")
        assert entries is not None and entries.values == {}
        assert set(entries.unreadable) == {"plain", "s3"}
        message = entries.unreadable["s3"]
        assert "key 's3' of secret 'default/storage-config'" in message
        assert reason in message
        assert SECRET_VALUE not in message


async def test_a_sealed_value_copied_into_another_secret_does_not_unseal(
    store: SqliteStore, key: SealingKey
) -> None:
    resources = ResourceStore(store, sealing_key=key)
    original = await resources.get(await resources.put(_secret(namespace="team-a")))
    assert original is not None
    await resources.put(_secret(namespace="team-b", entry={"type": "s3", "bucket": "b"}))
    # Someone with write access to the store moves team-a's credentials over.
    stolen = json.loads(json.dumps(original))
    stolen["metadata"]["namespace"] = "team-b"
    await store.put("resources/Secret/team-b/storage-config", json.dumps(stolen).encode())
    entries = await SealedSecrets(resources, sealing_key=key).read_secret(
        namespace="team-b", name="storage-config"
    )
    assert entries is not None and entries.values == {}
    assert "does not verify" in entries.unreadable["s3"]


# -- the puller reads it ------------------------------------------------------------


class _Reader:
    """A SecretReader over fixed entries, counting reads."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], SecretEntries] = {}
        self.reads: list[tuple[str, str]] = []

    def set(self, namespace: str, entry: dict[str, str], *, unreadable: str = "") -> None:
        self.secrets[(namespace, "storage-config")] = SecretEntries(
            origin=f"secret '{namespace}/storage-config'",
            values={} if unreadable else {"s3": json.dumps(entry).encode()},
            unreadable={"s3": unreadable} if unreadable else {},
        )

    async def read_secret(self, *, namespace: str, name: str) -> SecretEntries | None:
        self.reads.append((namespace, name))
        return self.secrets.get((namespace, name))


class _Source:
    def __init__(self, used: list[S3Config], config: S3Config, path: str) -> None:
        used.append(config)
        self._path = path

    location = "fake://"
    identity = "fake"

    def list(self) -> Listing:
        obj = RemoteObject(self._path, safe_relative_path("model.onnx", where="f"), 3, "etag")
        return Listing(name="model.onnx", objects=(obj,), is_directory=False)

    def download(self, obj: RemoteObject, sink: FileSink) -> None:
        sink.write(b"abc")

    def close(self) -> None:
        pass


def _puller(tmp_path: pathlib.Path, reader: _Reader, used: list[S3Config]) -> Puller:
    file_entry = {**ENTRY, "secret_access_key": "from-the-file", "bucket": "file-bucket"}
    file_only = {"type": "s3", "bucket": "file-only"}

    def factory(config: ProviderConfig, *, path: str, settings: StorageSettings) -> _Source:
        assert isinstance(config, S3Config)
        return _Source(used, config, path)

    return Puller(
        settings=StorageSettings(cache_max_bytes=0),
        data_dir=tmp_path,
        config=StorageConfig.from_mapping(
            {"s3": json.dumps(file_entry), "file-only": json.dumps(file_only)}
        ),
        secrets=reader,
        source_factory=factory,
    )


S3_KEY = build_model_key(model_type="onnx", storage_key="s3")


async def test_a_pull_uses_the_secret_of_the_models_namespace_over_the_file(
    tmp_path: pathlib.Path,
) -> None:
    reader, used = _Reader(), list[S3Config]()
    reader.set("team-a", {**ENTRY, "bucket": "team-a-bucket"})
    async with _puller(tmp_path, reader, used) as puller:
        await puller.pull(model_id="team-a/m__isvc-1", model_path="m.onnx", model_key=S3_KEY)
        await puller.pull(model_id="m__isvc-1", model_path="m.onnx", model_key=S3_KEY)
        file_only = build_model_key(model_type="onnx", storage_key="file-only")
        await puller.pull(model_id="team-a/other", model_path="m.onnx", model_key=file_only)
    assert reader.reads == [
        ("team-a", "storage-config"),
        ("default", "storage-config"),
        ("team-a", "storage-config"),
    ]
    assert [c.bucket_name for c in used] == ["team-a-bucket", "file-bucket", "file-only"]
    assert used[0].secret_access_key is not None
    assert used[0].secret_access_key.get_secret_value() == SECRET_VALUE


async def test_a_changed_secret_is_used_by_the_next_pull(tmp_path: pathlib.Path) -> None:
    reader, used = _Reader(), list[S3Config]()
    reader.set("default", ENTRY)
    async with _puller(tmp_path, reader, used) as puller:
        await puller.pull(model_id="a", model_path="m.onnx", model_key=S3_KEY)
        reader.set("default", {**ENTRY, "secret_access_key": "rotated"})
        await puller.pull(model_id="b", model_path="m.onnx", model_key=S3_KEY)
    secrets = [c.secret_access_key.get_secret_value() for c in used if c.secret_access_key]
    assert secrets == [SECRET_VALUE, "rotated"]


async def test_an_unsealable_key_fails_the_load_naming_secret_and_key(
    tmp_path: pathlib.Path,
) -> None:
    reader, used = _Reader(), list[S3Config]()
    reason = "cannot unseal key 's3' of secret 'default/storage-config': another sealing key"
    reader.set("default", ENTRY, unreadable=reason)
    async with _puller(tmp_path, reader, used) as puller:
        with pytest.raises(
            StorageConfigError, match="storage config for key 's3' is invalid"
        ) as info:
            await puller.pull(model_id="m", model_path="m.onnx", model_key=S3_KEY)
        missing = build_model_key(model_type="onnx", storage_key="nope")
        with pytest.raises(StorageConfigError, match="secret 'team-b/storage-config' \\(absent\\)"):
            await puller.pull(model_id="team-b/m", model_path="m.onnx", model_key=missing)
    assert reason in str(info.value)
    assert used == []


async def test_a_local_model_never_reads_the_secret(tmp_path: pathlib.Path) -> None:
    reader, used = _Reader(), list[S3Config]()
    reader.set("default", ENTRY, unreadable="cannot unseal")
    local = tmp_path / "local.onnx"
    local.write_bytes(b"abc")
    async with _puller(tmp_path, reader, used) as puller:
        pulled = await puller.pull(model_id="m", model_path=str(local), model_key="")
    assert pulled.local_path == str(local)
    assert reader.reads == []
