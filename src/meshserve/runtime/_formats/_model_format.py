"""How a model artifact is serialized."""

from __future__ import annotations

import enum

__all__ = ["ModelFormat"]


class ModelFormat(enum.Enum):
    """How a model artifact is serialized."""

    SKOPS = "skops"
    PICKLE = "pickle"
    XGBOOST_JSON = "xgboost_json"
    XGBOOST_UBJ = "xgboost_ubj"
    LIGHTGBM_TXT = "lightgbm_txt"
    ONNX = "onnx"
