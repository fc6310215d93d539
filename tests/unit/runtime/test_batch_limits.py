"""A model's batching limits: the runtime's settings, or its model key's."""

from __future__ import annotations

import pathlib

import pytest

from meshserve.errors import UnsupportedModelError
from meshserve.protocol.model_key import ModelKey
from meshserve.runtime import ModelSpec
from meshserve.runtime._batch_limits import BatchLimits
from meshserve.runtime._builtin import BuiltinRuntime
from meshserve.settings import RuntimeSettings


def test_on_by_default_without_a_wait() -> None:
    limits = BatchLimits.of_settings(RuntimeSettings())
    assert limits.enabled and limits.max_batch_delay_ms == 0


def test_the_model_key_overrides_the_settings() -> None:
    defaults = BatchLimits(max_batch_size=32)
    key = ModelKey.parse('{"max_batch_size": 1, "max_batch_delay_ms": 5}')
    assert defaults.for_key(key) == BatchLimits(max_batch_size=1, max_batch_delay_ms=5.0)
    assert defaults.for_key(ModelKey.parse("{}")) == defaults


@pytest.mark.parametrize(
    "key", ['{"max_batch_size": 0}', '{"max_batch_size": "8"}', '{"max_batch_delay_ms": -1}']
)
def test_a_bad_value_in_the_key_is_refused_naming_the_field(key: str) -> None:
    with pytest.raises(UnsupportedModelError, match="max_batch"):
        BatchLimits().for_key(ModelKey.parse(key))


def test_a_loaded_model_keeps_its_keys_limits(example_models: dict[str, pathlib.Path]) -> None:
    runtime = BuiltinRuntime(settings=RuntimeSettings(preload_libraries=False))
    runtime.load(
        ModelSpec(
            model_id="iris",
            model_type="sklearn",
            model_path=str(example_models["sklearn-skops"]),
            model_key='{"model_type": {"name": "sklearn"}, "max_batch_size": 4}',
        )
    )
    assert runtime.batch_limits("iris").max_batch_size == 4
    assert runtime.batch_limits("other").max_batch_size == 32
