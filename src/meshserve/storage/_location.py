"""What a registration may name as a model's location.

A model's path and key are stored and shown (``models status``, resource
status), so neither may carry a credential: a URI in the path is parsed by
the one storage-URI parser (:mod:`meshserve.resources`), every URI anywhere in
the model key JSON gets the same credential checks, and credential fields
in ``storage_params`` are refused. Refusals are InvalidRequestError
(INVALID_ARGUMENT / 400) and never quote the value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from meshserve import resources
from meshserve.errors import InvalidRequestError, StorageConfigError
from meshserve.protocol.model_key import ModelKey
from meshserve.storage._model_key import refuse_credential_params

__all__ = ["check_location"]


def check_location(*, model_path: str, model_key: str) -> None:
    """Raise InvalidRequestError if ``model_path`` or ``model_key`` carries a
    credential, or names an unusable storage URI."""
    if resources.is_storage_uri(model_path):
        resources.parse_storage_uri(model_path)
    else:
        resources.check_no_credentials(model_path)
    try:
        key = ModelKey.parse(model_key)
        refuse_credential_params(key.storage_params)
    except StorageConfigError as exc:
        raise InvalidRequestError(f"model key: {exc.message}") from None
    except RecursionError:
        raise InvalidRequestError("model key: nested too deeply") from None
    if model_key.strip():
        for text in _strings(json.loads(model_key)):
            try:
                resources.check_no_credentials(text)
            except InvalidRequestError as exc:
                raise InvalidRequestError(f"model key: {exc.message}") from None


def _strings(value: Any) -> Iterator[str]:
    """Every string in a decoded JSON value, keys included (iteratively: the
    value may nest as deeply as the decoder allowed)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(str(name) for name in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
