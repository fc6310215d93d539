"""The artifact cache: bounded by bytes, least recently used evicted first."""

from __future__ import annotations

import os
import pathlib

from meshserve.storage import ArtifactCache
from meshserve.storage._cache import cache_key


def _artifact(root: pathlib.Path, name: str, size: int) -> pathlib.Path:
    src = root / f"src-{name}"
    (src / name).mkdir(parents=True)
    (src / name / "weights.bin").write_bytes(b"x" * size)
    return src


def _put(cache: ArtifactCache, tmp: pathlib.Path, name: str, size: int) -> str:
    key = cache_key(name, [(f"{name}/weights.bin", "v1", size)])
    assert cache.put(
        key,
        _artifact(tmp, name, size),
        bytes_=size,
        digests={f"{name}/weights.bin": "d"},
        location=name,
    )
    return key


def _disk_bytes(root: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != "meta.json")


def test_the_bound_holds_and_the_least_recently_used_goes(tmp_path: pathlib.Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=250)
    cache.open()
    a = _put(cache, tmp_path, "a", 100)
    b = _put(cache, tmp_path, "b", 100)
    # Using a makes b the least recently used.
    assert cache.link_into(a, tmp_path / "out-a") is not None
    c = _put(cache, tmp_path, "c", 100)
    assert cache.keys() == [a, c]
    assert cache.total_bytes == 200
    assert _disk_bytes(tmp_path / "cache") <= 250
    assert cache.link_into(b, tmp_path / "out-b") is None


def test_linked_files_outlive_eviction(tmp_path: pathlib.Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=150)
    cache.open()
    a = _put(cache, tmp_path, "a", 100)
    out = tmp_path / "model"
    entry = cache.link_into(a, out)
    assert entry is not None
    assert entry.digests == {"a/weights.bin": "d"}
    _put(cache, tmp_path, "b", 100)
    assert cache.keys() != [a]
    assert (out / "a" / "weights.bin").read_bytes() == b"x" * 100


def test_an_artifact_larger_than_the_cache_is_not_kept(tmp_path: pathlib.Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=50)
    cache.open()
    key = cache_key("big", [])
    kept = cache.put(key, _artifact(tmp_path, "big", 100), bytes_=100, digests={}, location="big")
    assert not kept
    assert cache.keys() == []


def test_a_zero_bound_turns_the_cache_off(tmp_path: pathlib.Path) -> None:
    cache = ArtifactCache(tmp_path / "cache", max_bytes=0)
    cache.open()
    assert not cache.enabled
    assert not cache.put("k", _artifact(tmp_path, "a", 1), bytes_=1, digests={}, location="a")
    assert not (tmp_path / "cache").exists()


def test_reopening_restores_entries_in_use_order_and_drops_debris(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / "cache"
    cache = ArtifactCache(root, max_bytes=1000)
    cache.open()
    a = _put(cache, tmp_path, "a", 10)
    b = _put(cache, tmp_path, "b", 10)
    os.utime(root / a / "meta.json", (2_000_000_000, 2_000_000_000))
    (root / ".tmp-half-written").mkdir()
    (root / "no-meta").mkdir()

    reopened = ArtifactCache(root, max_bytes=1000)
    reopened.open()
    assert reopened.keys() == [b, a]
    assert reopened.total_bytes == 20
    assert not (root / ".tmp-half-written").exists()
    assert not (root / "no-meta").exists()

    smaller = ArtifactCache(root, max_bytes=15)
    smaller.open()
    assert smaller.keys() == [a]


def test_keys_change_with_any_version(tmp_path: pathlib.Path) -> None:
    one = cache_key("s3|e|b|p", [("p/x", "etag1", 1), ("p/y", "etag2", 2)])
    same = cache_key("s3|e|b|p", [("p/y", "etag2", 2), ("p/x", "etag1", 1)])
    other = cache_key("s3|e|b|p", [("p/x", "etag1", 1), ("p/y", "etag3", 2)])
    assert one == same
    assert one != other
    assert one != cache_key("s3|e2|b|p", [("p/x", "etag1", 1), ("p/y", "etag2", 2)])
