"""The core v1 Secret that holds a namespace's ``storage-config``."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from meshserve.resources._schema import ResourceBase

__all__ = ["SEALED_DATA_FIELD", "Secret"]

_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

SEALED_DATA_FIELD = "sealedData"
"""Where a stored Secret keeps its sealed values (in place of ``data``)."""


class Secret(ResourceBase):
    """A Kubernetes Secret: for meshserve, a namespace's ``storage-config``
    (storage key -> JSON). As parsed it holds the values in the clear; the
    resource store seals them before they are written (``meshserve.controller``),
    and nothing prints them (the fields are left out of ``repr``)."""

    ignored = frozenset({"status", "immutable"})

    kind: Literal["Secret"]
    api_version: Literal["v1"]
    secret_type: str = Field(default="Opaque", alias="type")
    data: dict[str, str] = Field(default_factory=dict, repr=False)
    """Base64 values, as Kubernetes keeps them."""
    string_data: dict[str, str] = Field(default_factory=dict, repr=False)
    """Plain values; on a key both have, this wins (as in Kubernetes)."""
    immutable: bool | None = None

    @field_validator("data", "string_data")
    @classmethod
    def _keys_and_values(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key, item in value.items():
            if len(key) > 253 or not _SECRET_KEY.match(key):
                raise ValueError(f"key '{key}' must be at most 253 of a-z, A-Z, 0-9, '-', '_', '.'")
            if info.field_name == "data":
                try:
                    base64.b64decode(item, validate=True)
                except (binascii.Error, ValueError):
                    # The value is a credential: name the key only.
                    raise ValueError(f"key '{key}': not valid base64") from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _not_sealed(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and SEALED_DATA_FIELD in value:
            raise ValueError(
                f"{SEALED_DATA_FIELD} is what meshserve stores, not what it applies; "
                "give the values in data or stringData"
            )
        return value

    def items(self) -> dict[str, bytes]:
        """Every key's value as bytes (``data`` decoded, ``stringData`` over it)."""
        values = {key: base64.b64decode(item) for key, item in self.data.items()}
        values.update({key: item.encode() for key, item in self.string_data.items()})
        return values
