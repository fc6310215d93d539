"""The storage package's public names, and its errors' place in the tree."""

from __future__ import annotations

import sys

import pytest

import meshserve.storage as storage
from meshserve import errors
from meshserve.protocol import status


def test_exported_names_exist_and_are_sorted() -> None:
    assert storage.__all__ == sorted(storage.__all__)
    for name in storage.__all__:
        assert hasattr(storage, name), name


def test_storage_errors_are_load_failures_rebuilt_by_name() -> None:
    for cls in (
        errors.StorageConfigError,
        errors.ArtifactNotFoundError,
        errors.StorageAccessDeniedError,
        errors.ArtifactRejectedError,
        errors.StorageUnavailableError,
    ):
        assert issubclass(cls, errors.StorageError)
        assert issubclass(cls, errors.ModelLoadError)
        rebuilt = status.error_from_name(cls.__name__, "storage key 'k', path 'p': x")
        assert type(rebuilt) is cls
    assert errors.StorageUnavailableError("x").retryable
    assert not errors.ArtifactNotFoundError("x").retryable


def test_a_missing_client_library_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from meshserve.settings import StorageSettings

    monkeypatch.setitem(sys.modules, "boto3", None)  # "not installed"
    monkeypatch.delitem(sys.modules, "meshserve.storage._s3", raising=False)
    config = storage.S3Config.model_validate({"type": "s3", "bucket": "b"})
    with pytest.raises(errors.StorageConfigError, match=r"'boto3'.*meshserve\[storage\]"):
        storage.open_source(config, path="p", settings=StorageSettings())
