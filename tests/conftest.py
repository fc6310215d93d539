from __future__ import annotations

import pathlib

import pytest

from tests._examples import make_models_module


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """Every example model, made once per test session: name -> model file."""
    out = tmp_path_factory.mktemp("example-models")
    models: dict[str, pathlib.Path] = make_models_module().make_models(out)
    return models
