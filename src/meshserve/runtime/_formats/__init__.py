"""The model formats of the built-in runtime: find, size and load artifacts.

``find_artifact`` picks the model file for a model type at a path,
``estimate_size`` sizes it without loading, ``load_model`` loads it into a
``LoadedModel`` that reports its metadata and size and predicts. Each
format's library is imported only when a model of that format loads. See
docs/model-formats.md for detection rules, outputs and the pickle policy.
"""

from __future__ import annotations

from meshserve.runtime._formats._artifact import (
    Artifact,
    ModelFormat,
    find_artifact,
    supported_model_types,
)
from meshserve.runtime._formats._imports import preload_libraries
from meshserve.runtime._formats._load import load_model
from meshserve.runtime._formats._model import LoadedModel
from meshserve.runtime._formats._sizing import estimate_size

__all__ = [
    "Artifact",
    "LoadedModel",
    "ModelFormat",
    "estimate_size",
    "find_artifact",
    "load_model",
    "preload_libraries",
    "supported_model_types",
]
