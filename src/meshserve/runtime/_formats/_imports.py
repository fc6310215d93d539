"""Importing a format's library only when a model of that format loads.

A runtime installed with only ``meshserve[onnx]`` must still serve ONNX
models, so no format module imports its library at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from meshserve.errors import UnsupportedModelError

__all__ = ["preload_libraries", "require"]


def require(module: str, *, model_type: str, extra: str) -> ModuleType:
    """Import ``module`` or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UnsupportedModelError(
            f"{model_type} models need the '{module.split('.')[0]}' package, which is not "
            f"installed in this runtime ({exc}); install it with: pip install meshserve[{extra}]"
        ) from exc


# What each format imports when its first model loads.
_LIBRARIES = ("sklearn", "skops.io", "xgboost", "lightgbm", "onnxruntime")


def preload_libraries() -> list[str]:
    """Import every installed format library now (seconds for sklearn and
    xgboost), so the first model of each format does not pay for it while a
    request waits. Missing libraries are skipped; returns those imported."""
    loaded = []
    for module in _LIBRARIES:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        loaded.append(module)
    return loaded
