"""Finding the model file for a model type at a path.

A model path is a file or a directory. In a directory the one file whose
extension fits the model type is the artifact; unrelated files (README,
metadata, hidden files) are ignored. Where an extension is shared with
non-model files (``.txt``, ``.json``) and more than one file has it, the
contents decide: a LightGBM text model starts with ``tree``, an XGBoost
model holds a ``learner`` object near its start.
"""

from __future__ import annotations

import enum
import pathlib
from dataclasses import dataclass

from meshserve.errors import UnsupportedModelError

__all__ = ["Artifact", "ModelFormat", "find_artifact"]


class ModelFormat(enum.Enum):
    """How a model artifact is serialized."""

    SKOPS = "skops"
    PICKLE = "pickle"
    XGBOOST_JSON = "xgboost_json"
    XGBOOST_UBJ = "xgboost_ubj"
    LIGHTGBM_TXT = "lightgbm_txt"
    ONNX = "onnx"


@dataclass(frozen=True, slots=True)
class Artifact:
    """One model file, ready to be sized or loaded."""

    path: pathlib.Path
    model_type: str
    format: ModelFormat
    disk_size: int
    """Bytes on disk."""


# model type -> extension -> format. LightGBM saves text models under any
# name; .model and .lgb are the common ones besides .txt.
_EXTENSIONS: dict[str, dict[str, ModelFormat]] = {
    "sklearn": {
        ".skops": ModelFormat.SKOPS,
        ".joblib": ModelFormat.PICKLE,
        ".pkl": ModelFormat.PICKLE,
        ".pickle": ModelFormat.PICKLE,
    },
    "xgboost": {
        ".json": ModelFormat.XGBOOST_JSON,
        ".ubj": ModelFormat.XGBOOST_UBJ,
    },
    "lightgbm": {
        ".txt": ModelFormat.LIGHTGBM_TXT,
        ".model": ModelFormat.LIGHTGBM_TXT,
        ".lgb": ModelFormat.LIGHTGBM_TXT,
    },
    "onnx": {".onnx": ModelFormat.ONNX},
}

_SNIFF_BYTES = 64


def supported_model_types() -> tuple[str, ...]:
    return tuple(_EXTENSIONS)


def find_artifact(*, model_type: str, model_path: pathlib.Path) -> Artifact:
    """The model file of ``model_type`` (case-insensitive) at ``model_path``.

    Raises ``UnsupportedModelError`` for an unknown type, a missing path, a
    file whose extension does not fit the type, or a directory holding no
    file or more than one file of the type.
    """
    kind = model_type.strip().lower()
    extensions = _EXTENSIONS.get(kind)
    if extensions is None:
        raise UnsupportedModelError(
            f"model type '{model_type}' is not supported for {model_path}; "
            f"supported types: {', '.join(_EXTENSIONS)}"
        )
    if model_path.is_dir():
        path = _pick_in_directory(directory=model_path, model_type=kind, extensions=extensions)
    elif model_path.is_file():
        path = model_path
    else:
        raise UnsupportedModelError(
            f"{kind} model path {model_path} does not exist (or is not a file or directory)"
        )
    model_format = extensions.get(path.suffix.lower())
    if model_format is None:
        raise UnsupportedModelError(
            f"{path} is not a {kind} model file: {kind} models end in {_listing(extensions)}"
        )
    return Artifact(path=path, model_type=kind, format=model_format, disk_size=path.stat().st_size)


def _pick_in_directory(
    *, directory: pathlib.Path, model_type: str, extensions: dict[str, ModelFormat]
) -> pathlib.Path:
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in files if p.suffix.lower() in extensions]
    if len(candidates) > 1:
        # A README.txt or metadata.json beside the model shares its extension.
        looks_right = [p for p in candidates if _looks_like(p, extensions[p.suffix.lower()])]
        if len(looks_right) == 1:
            return looks_right[0]
        # Counted, never named: the path may be any directory a caller
        # points at, and an error must not list what is in it.
        count = len(looks_right or candidates)
        raise UnsupportedModelError(
            f"{model_type} model directory {directory} holds {count} candidate model "
            "files; leave one, or point the model path at the file"
        )
    if not candidates:
        raise UnsupportedModelError(
            f"{model_type} model directory {directory} has no file ending in {_listing(extensions)}"
        )
    return candidates[0]


def _looks_like(path: pathlib.Path, model_format: ModelFormat) -> bool:
    """Whether the start of ``path`` fits the format (used to break ties only)."""
    try:
        with path.open("rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError:
        return False
    if model_format is ModelFormat.LIGHTGBM_TXT:
        return head.startswith(b"tree")
    if model_format in (ModelFormat.XGBOOST_JSON, ModelFormat.XGBOOST_UBJ):
        return b"learner" in head
    return True


def _listing(extensions: dict[str, ModelFormat]) -> str:
    return ", ".join(extensions)
