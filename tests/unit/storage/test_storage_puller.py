"""The puller against a fake store: sharing, retries, limits, pins, cache, progress."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import pathlib
import posixpath
import threading
from dataclasses import dataclass, field

import pytest

from meshserve.errors import (
    ArtifactNotFoundError,
    ArtifactRejectedError,
    InvalidRequestError,
    StorageAccessDeniedError,
    StorageConfigError,
    StorageUnavailableError,
)
from meshserve.storage import (
    FileSink,
    Listing,
    LocalRoots,
    ProviderConfig,
    Puller,
    PullProgress,
    RemoteObject,
    S3Config,
    StorageConfig,
    StorageSettings,
    TransientStorageError,
    build_model_key,
)
from meshserve.storage._paths import safe_relative_path

MIB = 1024 * 1024
SECRET = "s3cr3t-value-that-must-not-leak"


@dataclass
class FakeStore:
    """Objects by key, with request counts and scripted failures."""

    objects: dict[str, bytes] = field(default_factory=dict)
    lists: int = 0
    downloads: int = 0
    fail_transient: int = 0
    fail_with: Exception | None = None
    gate: threading.Event | None = None
    hide_sizes: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, key: str, data: bytes) -> None:
        self.objects[key] = data


class FakeSource:
    def __init__(self, store: FakeStore, path: str) -> None:
        self._store = store
        self._path = path

    @property
    def location(self) -> str:
        return f"fake://{self._path}"

    @property
    def identity(self) -> str:
        return f"fake|{self._path}"

    def list(self) -> Listing:
        store = self._store
        with store.lock:
            store.lists += 1
            if store.fail_with is not None:
                raise store.fail_with
            if store.fail_transient > 0:
                store.fail_transient -= 1
                raise TransientStorageError(f"503 from a server that echoes {SECRET}")
        path = self._path.rstrip("/")
        name = posixpath.basename(path)
        if path in store.objects:
            data = store.objects[path]
            size = None if store.hide_sizes else len(data)
            obj = RemoteObject(path, safe_relative_path(name, where="f"), size, _etag(data))
            return Listing(name=name, objects=(obj,), is_directory=False)
        objs = tuple(
            RemoteObject(
                key,
                safe_relative_path(f"{name}/{key[len(path) + 1 :]}", where="f"),
                len(data),
                _etag(data),
            )
            for key, data in sorted(store.objects.items())
            if key.startswith(path + "/")
        )
        if not objs:
            raise ArtifactNotFoundError("no object or prefix at that path")
        return Listing(name=name, objects=objs, is_directory=True)

    def download(self, obj: RemoteObject, sink: FileSink) -> None:
        with self._store.lock:
            self._store.downloads += 1
        if self._store.gate is not None:
            assert self._store.gate.wait(10)
        data = self._store.objects[obj.name]
        for start in range(0, len(data), MIB):
            sink.write(data[start : start + MIB])

    def close(self) -> None:
        pass


def _etag(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _config() -> StorageConfig:
    return StorageConfig.from_mapping(
        {
            "fake": json.dumps(
                {
                    "type": "s3",
                    "bucket": "models",
                    "access_key_id": "AKIDFAKE",
                    "secret_access_key": SECRET,
                }
            )
        }
    )


def _puller(
    tmp_path: pathlib.Path,
    store: FakeStore,
    *,
    progress: list[PullProgress] | None = None,
    **overrides: object,
) -> Puller:
    values: dict[str, object] = {
        "retry_initial_backoff_s": 0.0,
        "retry_max_backoff_s": 0.0,
        "pvc_root": tmp_path / "pvc",
    }
    values.update(overrides)
    settings = StorageSettings.model_validate(values)

    def factory(config: ProviderConfig, *, path: str, settings: StorageSettings) -> FakeSource:
        assert isinstance(config, S3Config)
        return FakeSource(store, path)

    return Puller(
        settings=settings,
        data_dir=tmp_path / "data",
        config=_config(),
        progress=progress.append if progress is not None else None,
        source_factory=factory,
    )


KEY = build_model_key(model_type="onnx", storage_key="fake")


async def test_a_file_lands_in_the_model_directory_and_release_removes_it(
    tmp_path: pathlib.Path,
) -> None:
    store = FakeStore()
    store.put("m/model.onnx", b"onnx-bytes")
    async with _puller(tmp_path, store) as puller:
        pulled = await puller.pull(model_id="m1", model_path="m/model.onnx", model_key=KEY)
        local = pathlib.Path(pulled.local_path)
        assert local == puller.models_dir / "m1" / "model.onnx"
        assert local.read_bytes() == b"onnx-bytes"
        assert pulled.bytes == len(b"onnx-bytes")
        assert not pulled.from_cache
        # Nothing half-made is left beside it.
        assert sorted(p.name for p in puller.models_dir.iterdir()) == [".staging", "m1"]
        assert list((puller.models_dir / ".staging").iterdir()) == []
        await puller.release("m1")
        assert not (puller.models_dir / "m1").exists()


async def test_a_prefix_is_pulled_as_a_tree(tmp_path: pathlib.Path) -> None:
    store = FakeStore()
    store.put("tf/saved/saved_model.pb", b"pb")
    store.put("tf/saved/variables/v.data", b"vars")
    async with _puller(tmp_path, store) as puller:
        pulled = await puller.pull(model_id="tf", model_path="tf/saved", model_key=KEY)
        local = pathlib.Path(pulled.local_path)
        assert local.is_dir()
        assert (local / "variables" / "v.data").read_bytes() == b"vars"
        assert pulled.bytes == 6


async def test_eight_concurrent_pulls_share_one_download(tmp_path: pathlib.Path) -> None:
    gate = threading.Event()
    store = FakeStore(gate=gate)
    store.put("m/model.onnx", b"x" * 1000)
    async with _puller(tmp_path, store) as puller:
        pulls = [
            asyncio.create_task(
                puller.pull(model_id=f"m{i}", model_path="m/model.onnx", model_key=KEY)
            )
            for i in range(8)
        ]
        await asyncio.sleep(0.2)
        gate.set()
        results = await asyncio.gather(*pulls)
        assert store.downloads == 1
        assert store.lists == 1
        for i, pulled in enumerate(results):
            assert pathlib.Path(pulled.local_path).read_bytes() == b"x" * 1000
            assert f"/m{i}/" in pulled.local_path
        assert list((puller.models_dir / ".staging").iterdir()) == []


async def test_after_release_the_cache_serves_without_a_download(
    tmp_path: pathlib.Path,
) -> None:
    store = FakeStore()
    store.put("m/model.onnx", b"x" * 1000)
    async with _puller(tmp_path, store) as puller:
        await puller.pull(model_id="m", model_path="m/model.onnx", model_key=KEY)
        await puller.release("m")
        again = await puller.pull(model_id="m", model_path="m/model.onnx", model_key=KEY)
        assert again.from_cache
        assert store.downloads == 1
        assert store.lists == 2
        assert pathlib.Path(again.local_path).read_bytes() == b"x" * 1000
        # A changed object is a new version: downloaded again.
        store.put("m/model.onnx", b"y" * 1000)
        await puller.release("m")
        changed = await puller.pull(model_id="m", model_path="m/model.onnx", model_key=KEY)
        assert not changed.from_cache
        assert pathlib.Path(changed.local_path).read_bytes() == b"y" * 1000


async def test_transient_failures_are_retried_then_give_up(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = FakeStore(fail_transient=2)
    store.put("m/model.onnx", b"ok")
    async with _puller(tmp_path, store, retry_attempts=3) as puller:
        pulled = await puller.pull(model_id="m", model_path="m/model.onnx", model_key=KEY)
        assert pathlib.Path(pulled.local_path).read_bytes() == b"ok"
        assert store.lists == 3
        store.fail_transient = 5
        with pytest.raises(StorageUnavailableError, match="gave up after 3 attempts") as info:
            await puller.pull(model_id="n", model_path="m/model.onnx", model_key=KEY)
        assert info.value.retryable
        assert "storage key 'fake'" in str(info.value)
        assert SECRET not in str(info.value)
    assert SECRET not in caplog.text
    assert "***" in caplog.text


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ArtifactNotFoundError("not found (404)"), ArtifactNotFoundError),
        (StorageAccessDeniedError(f"denied for {SECRET}"), StorageAccessDeniedError),
    ],
)
async def test_permanent_failures_fail_at_once_naming_key_and_path(
    tmp_path: pathlib.Path, error: Exception, kind: type[Exception]
) -> None:
    store = FakeStore(fail_with=error)
    async with _puller(tmp_path, store, retry_attempts=5) as puller:
        with pytest.raises(kind) as info:
            await puller.pull(model_id="m", model_path="m/missing.onnx", model_key=KEY)
    assert store.lists == 1
    message = str(info.value)
    assert "storage key 'fake'" in message
    assert "path 'm/missing.onnx'" in message
    assert "bucket 'models'" in message
    assert SECRET not in message


async def test_unknown_storage_key_names_it(tmp_path: pathlib.Path) -> None:
    async with _puller(tmp_path, FakeStore()) as puller:
        with pytest.raises(StorageConfigError, match="'other'"):
            await puller.pull(
                model_id="m",
                model_path="m/x",
                model_key=build_model_key(storage_key="other"),
            )


async def test_the_size_limit_refuses_before_and_during_download(
    tmp_path: pathlib.Path,
) -> None:
    store = FakeStore()
    store.put("big/model.bin", b"x" * 3000)
    async with _puller(tmp_path, store, max_model_bytes=2000) as puller:
        with pytest.raises(ArtifactRejectedError, match="more than the 2000"):
            await puller.pull(model_id="m", model_path="big/model.bin", model_key=KEY)
        assert store.downloads == 0
        assert not (puller.models_dir / "m").exists()
        # A store that reports no size is cut off once the limit is crossed.
        store.hide_sizes = True
        with pytest.raises(ArtifactRejectedError, match="more than the 2000"):
            await puller.pull(model_id="m", model_path="big/model.bin", model_key=KEY)
        assert store.downloads == 1
        assert not (puller.models_dir / "m").exists()
        assert list((puller.models_dir / ".staging").iterdir()) == []


async def test_a_sha256_pin_is_checked(tmp_path: pathlib.Path) -> None:
    store = FakeStore()
    store.put("m/model.onnx", b"payload")
    good = hashlib.sha256(b"payload").hexdigest()
    async with _puller(tmp_path, store) as puller:
        pinned = build_model_key(storage_key="fake", storage_params={"sha256": good})
        pulled = await puller.pull(model_id="a", model_path="m/model.onnx", model_key=pinned)
        assert pathlib.Path(pulled.local_path).read_bytes() == b"payload"
        wrong = build_model_key(storage_key="fake", storage_params={"sha256": "0" * 64})
        with pytest.raises(ArtifactRejectedError, match="sha256 mismatch"):
            await puller.pull(model_id="b", model_path="m/model.onnx", model_key=wrong)
        assert not (puller.models_dir / "b").exists()


async def test_object_names_that_escape_are_refused(tmp_path: pathlib.Path) -> None:
    async with _puller(tmp_path, FakeStore()) as puller:
        with pytest.raises(ArtifactRejectedError, match=r"'\.\.'"):
            await puller.pull(model_id="m", model_path="m/../../etc/x", model_key=KEY)


async def test_progress_is_reported_every_8_mib(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="meshserve.storage")
    store = FakeStore()
    store.put("m/big.bin", b"z" * (16 * MIB))
    store.put("m/small.bin", b"z" * MIB)
    events: list[PullProgress] = []
    async with _puller(tmp_path, store, progress=events) as puller:
        await puller.pull(model_id="big", model_path="m/big.bin", model_key=KEY)
        await asyncio.sleep(0)
        assert [e.bytes_done for e in events] == [8 * MIB, 16 * MIB]
        assert events[-1].done
        assert all(e.bytes_total == 16 * MIB and e.model_id == "big" for e in events)
        events.clear()
        await puller.pull(model_id="small", model_path="m/small.bin", model_key=KEY)
        await asyncio.sleep(0)
        assert events == []
    assert caplog.text.count("pulling model big") == 2


async def test_local_paths_without_storage_are_returned_unchanged(
    tmp_path: pathlib.Path,
) -> None:
    model = tmp_path / "iris.onnx"
    model.write_bytes(b"abc")
    async with _puller(tmp_path, FakeStore()) as puller:
        for key in ("", '{"model_type": {"name": "onnx"}}'):
            pulled = await puller.pull(model_id="m", model_path=str(model), model_key=key)
            assert pulled.local_path == str(model)
            assert pulled.bytes == 3
        await puller.release("m")
    assert model.exists()


async def test_pvc_paths_are_used_in_place_and_checked(tmp_path: pathlib.Path) -> None:
    claim = tmp_path / "pvc" / "claim"
    (claim / "m").mkdir(parents=True)
    (claim / "m" / "model.onnx").write_bytes(b"pvc-bytes")
    (tmp_path / "secret").write_text("top secret")
    (claim / "evil").mkdir()
    (claim / "evil" / "link").symlink_to(tmp_path / "secret")
    (claim / "outside").symlink_to(tmp_path)
    async with _puller(tmp_path, FakeStore()) as puller:
        pulled = await puller.pull(
            model_id="m", model_path="pvc://claim/m/model.onnx", model_key=""
        )
        assert pulled.local_path == str(claim / "m" / "model.onnx")
        assert pulled.bytes == 9
        key = build_model_key(storage_params={"type": "pvc", "name": "claim"})
        same = await puller.pull(model_id="m", model_path="m/model.onnx", model_key=key)
        assert same.local_path == pulled.local_path
        with pytest.raises(ArtifactRejectedError, match="symlink"):
            await puller.pull(model_id="e", model_path="pvc://claim/evil", model_key="")
        with pytest.raises(ArtifactRejectedError, match="outside the claim"):
            await puller.pull(model_id="o", model_path="pvc://claim/outside/secret", model_key="")
        with pytest.raises(ArtifactRejectedError, match=r"'\.\.'"):
            await puller.pull(model_id="t", model_path="pvc://claim/../secret", model_key="")
        with pytest.raises(ArtifactNotFoundError, match="claim 'nope'"):
            await puller.pull(model_id="n", model_path="pvc://nope/m", model_key="")
        await puller.release("m")
    assert (claim / "m" / "model.onnx").exists()


async def test_a_claim_that_is_itself_a_symlink_out_of_the_pvc_root_is_refused(
    tmp_path: pathlib.Path,
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "m").mkdir(parents=True)
    (elsewhere / "m" / "model.onnx").write_bytes(b"not yours")
    (tmp_path / "pvc").mkdir()
    (tmp_path / "pvc" / "escape").symlink_to(elsewhere)
    async with _puller(tmp_path, FakeStore()) as puller:
        for path, key in (
            ("pvc://escape/m/model.onnx", ""),
            ("m/model.onnx", build_model_key(storage_params={"type": "pvc", "name": "escape"})),
        ):
            with pytest.raises(ArtifactRejectedError, match="resolves outside the pvc root"):
                await puller.pull(model_id="x", model_path=path, model_key=key)


async def test_local_paths_outside_the_allowed_roots_are_refused(tmp_path: pathlib.Path) -> None:
    shared = tmp_path / "shared"
    team_b = tmp_path / "team-b"
    for root in (shared, team_b, tmp_path / "pvc" / "claim"):
        root.mkdir(parents=True)
        (root / "model.onnx").write_bytes(b"abc")
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "listing-me").write_text("x")
    (shared / "escape").symlink_to(tmp_path / "private")
    puller = _puller(
        tmp_path,
        FakeStore(),
        local_roots=[str(shared)],
        namespace_local_roots={"team-b": [str(team_b)]},
    )
    async with puller:
        ok = await puller.pull(model_id="m", model_path=str(shared / "model.onnx"), model_key="")
        assert ok.local_path == str(shared / "model.onnx")
        # The pvc root is allowed with the shared roots.
        puller.check_location(
            model_id="m", model_path=str(tmp_path / "pvc" / "claim" / "model.onnx"), model_key=""
        )
        # team-b's own root is team-b's only: not the shared one, and no
        # other namespace may use it.
        puller.check_location(
            model_id="team-b/m", model_path=str(team_b / "model.onnx"), model_key=""
        )
        refused = [
            ("m", "/etc"),
            ("m", str(shared / ".." / "private")),
            ("m", str(shared / "escape" / "listing-me")),
            ("m", "../../.."),
            ("m", "relative/model.onnx"),
            ("team-a/m", str(team_b / "model.onnx")),
            ("team-b/m", str(shared / "model.onnx")),
        ]
        for model_id, path in refused:
            with pytest.raises(InvalidRequestError) as info:
                puller.check_location(model_id=model_id, model_path=path, model_key="")
            assert "allowed roots" in str(info.value)
            assert "listing-me" not in str(info.value)
            with pytest.raises(ArtifactRejectedError, match="allowed roots"):
                await puller.pull(model_id=model_id, model_path=path, model_key="")


def test_with_auth_on_and_no_roots_set_only_the_pvc_root_is_allowed(
    tmp_path: pathlib.Path,
) -> None:
    settings = StorageSettings(pvc_root=tmp_path / "pvc")
    (tmp_path / "pvc").mkdir()
    assert (
        LocalRoots.from_settings(settings, auth_enabled=False).refusal("/etc", namespace="") is None
    )
    roots = LocalRoots.from_settings(settings, auth_enabled=True)
    assert roots.refusal(str(tmp_path / "pvc" / "m"), namespace="") is None
    assert "allowed roots" in (roots.refusal("/etc", namespace="") or "")
    none = LocalRoots.from_settings(StorageSettings(), auth_enabled=True)
    assert "no local paths are allowed" in (none.refusal("/etc", namespace="") or "")


@pytest.mark.parametrize(
    ("path", "key"),
    [
        (f"s3://AKIA:{SECRET}@bucket/m", ""),
        (f"https://h.test/m?X-Amz-Signature={SECRET}", ""),
        (f"ftp://u:{SECRET}@h.test/m", ""),
        ("m", json.dumps({"storage_params": {"type": "http", "url": f"https://u:{SECRET}@h/m"}})),
        ("m", json.dumps({"storage_params": {"type": "s3", "secret_access_key": SECRET}})),
        ("m", json.dumps({"storage_key": "k", "extra": [{"u": f"https://h/m#token={SECRET}"}]})),
        ("m", json.dumps({"disk_size_bytes": SECRET})),
        ("m", "[" * 100_000),
    ],
)
async def test_a_registration_carrying_a_credential_is_refused_without_echoing_it(
    tmp_path: pathlib.Path, path: str, key: str
) -> None:
    async with _puller(tmp_path, FakeStore()) as puller:
        with pytest.raises(InvalidRequestError) as info:
            puller.check_location(model_id="m", model_path=path, model_key=key)
    assert SECRET not in str(info.value)
