"""Model keys meshserve writes (``models register``, the controller).

The key (parsed by ``meshserve.protocol.model_key``) names where the model
lives; the storage config holds the credentials, so a key that carries one
is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshserve.errors import StorageConfigError
from meshserve.protocol.model_key import ModelKey
from meshserve.storage._providers import CREDENTIAL_FIELDS

__all__ = ["build_model_key", "refuse_credential_params"]


def build_model_key(
    *,
    model_type: str = "",
    model_type_version: str = "",
    storage_key: str | None = None,
    storage_params: Mapping[str, str] | None = None,
    schema_path: str | None = None,
    extra: Mapping[str, int | float] | None = None,
) -> str:
    """A model key JSON for a registration (``models register``, the
    controller). Refuses credential fields in ``storage_params``. ``extra``
    adds fields for the runtime (adaptive batching limits)."""
    params = {str(k): str(v) for k, v in (storage_params or {}).items()}
    refuse_credential_params(params)
    return ModelKey(
        storage_key=storage_key or None,
        storage_params=params,
        model_type=model_type,
        model_type_version=model_type_version,
        schema_path=schema_path or None,
        extra=dict(extra or {}),
    ).to_json()


def refuse_credential_params(params: Mapping[str, str]) -> None:
    """StorageConfigError if ``params`` (``storage_params``) has a field that
    holds a credential: those come from the storage config only."""
    for name in params:
        if name in CREDENTIAL_FIELDS:
            raise StorageConfigError(
                f"storage parameter '{name}' is a credential: put it in the storage "
                "config and name its key, so it never travels in the model key"
            )
