"""Importing a format's library only when a model of that format loads.

A runtime installed with only ``meshserve[onnx]`` must still serve ONNX
models, so no format module imports its library at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from meshserve.errors import UnsupportedModelError

__all__ = ["require"]


def require(module: str, *, model_type: str, extra: str) -> ModuleType:
    """Import ``module`` or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UnsupportedModelError(
            f"{model_type} models need the '{module.split('.')[0]}' package, which is not "
            f"installed in this runtime ({exc}); install it with: pip install meshserve[{extra}]"
        ) from exc
