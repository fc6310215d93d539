from __future__ import annotations

import pathlib
import signal

import pytest

from tests._examples import make_models_module

# A run started in the background by a non-interactive shell (`cmd &`)
# inherits SIGINT ignored, and so would every process the tests start; tests
# that press Ctrl-C (SIGINT) on a child need it delivered. A handler here
# makes exec reset it to the default in the children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """Every example model, made once per test session: name -> model file."""
    out = tmp_path_factory.mktemp("example-models")
    models: dict[str, pathlib.Path] = make_models_module().make_models(out)
    return models
