"""Finding the model file for a model type at a path.

A model path is a file or a directory. In a directory the one file of the
model type is the artifact; unrelated files (README, metadata, hidden
files) are ignored. sklearn and onnx files are told by their extension.
XGBoost and LightGBM files are told by their content first (see
``_sniff``): LightGBM saves text under any name (``mushroom.bst``), XGBoost
writes UBJSON to ``model.bst``. A directory holding no model file but
numbered version directories is Triton's layout (see ``_triton``): the
highest version holds the model.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from meshserve.errors import UnsupportedModelError
from meshserve.runtime._formats import _sniff, _triton
from meshserve.runtime._formats._model_format import ModelFormat

__all__ = ["Artifact", "ModelFormat", "find_artifact", "supported_model_types"]


@dataclass(frozen=True, slots=True)
class Artifact:
    """One model file, ready to be sized or loaded."""

    path: pathlib.Path
    model_type: str
    format: ModelFormat
    disk_size: int
    """Bytes on disk."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """How the files of one model type are recognised."""

    extensions: Mapping[str, ModelFormat]
    sniff: Callable[[bytes], ModelFormat | None] | None = None
    """Detection by content, which wins over the extension."""
    shape: str = ""
    """What a file of the type looks like inside, for messages."""
    advice: str = ""
    """What to do with a file of the type that is not in a readable format."""


_KINDS: dict[str, _Kind] = {
    "sklearn": _Kind(
        {
            ".skops": ModelFormat.SKOPS,
            ".joblib": ModelFormat.PICKLE,
            ".pkl": ModelFormat.PICKLE,
            ".pickle": ModelFormat.PICKLE,
        }
    ),
    "xgboost": _Kind(
        {".json": ModelFormat.XGBOOST_JSON, ".ubj": ModelFormat.XGBOOST_UBJ},
        sniff=_sniff.xgboost_document,
        shape="an XGBoost model is a JSON or UBJSON document that names its learner first",
        advice=(
            "re-save it with booster.save_model('model.json') (XGBoost's legacy binary "
            "format and pickled boosters are not read)"
        ),
    ),
    "lightgbm": _Kind(
        # LightGBM saves text models under any name; these are the usual ones.
        {
            ".txt": ModelFormat.LIGHTGBM_TXT,
            ".model": ModelFormat.LIGHTGBM_TXT,
            ".lgb": ModelFormat.LIGHTGBM_TXT,
            ".bst": ModelFormat.LIGHTGBM_TXT,
        },
        sniff=_sniff.lightgbm_text,
        shape="a LightGBM text model starts with a 'tree' line, then 'version=v...'",
        advice="re-save it with booster.save_model('model.txt') (pickled boosters are not read)",
    ),
    "onnx": _Kind({".onnx": ModelFormat.ONNX}),
}


def supported_model_types() -> tuple[str, ...]:
    return tuple(_KINDS)


def find_artifact(*, model_type: str, model_path: pathlib.Path) -> Artifact:
    """The model file of ``model_type`` (case-insensitive) at ``model_path``.

    Raises ``UnsupportedModelError`` for an unknown type, a missing path, a
    file that is not of the type, or a directory holding no file or more
    than one file of the type.
    """
    name = model_type.strip().lower()
    kind = _KINDS.get(name)
    if kind is None:
        raise UnsupportedModelError(
            f"model type '{model_type}' is not supported for {model_path}; "
            f"supported types: {', '.join(_KINDS)}"
        )
    if model_path.is_dir():
        path = _pick_in_directory(directory=model_path, model_type=name, kind=kind)
    elif model_path.is_file():
        path = model_path
    else:
        raise UnsupportedModelError(
            f"{name} model path {model_path} does not exist (or is not a file or directory)"
        )
    model_format = _format_of(path, model_type=name, kind=kind)
    return Artifact(path=path, model_type=name, format=model_format, disk_size=path.stat().st_size)


def _format_of(path: pathlib.Path, *, model_type: str, kind: _Kind) -> ModelFormat:
    by_extension = kind.extensions.get(path.suffix.lower())
    if kind.sniff is None:
        if by_extension is None:
            raise UnsupportedModelError(
                f"{path} is not a {model_type} model file: {model_type} models end in "
                f"{_listing(kind)}"
            )
        return by_extension
    start = _sniff.head(path)
    sniffed = kind.sniff(start)
    if sniffed is not None:
        return sniffed
    if _sniff.is_pickle(start):
        raise UnsupportedModelError(
            f"{model_type} model {path} is a pickle, and pickles run code when they are "
            f"loaded: {kind.advice}"
        )
    if by_extension is not None:
        # Named like one: its library says what is wrong with it.
        return by_extension
    raise UnsupportedModelError(
        f"{path} is not a {model_type} model file ({kind.shape}): {kind.advice}"
    )


def _pick_in_directory(
    *, directory: pathlib.Path, model_type: str, kind: _Kind, in_version: bool = False
) -> pathlib.Path:
    files = sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith("."))
    # (file, whether its content confirms the type)
    candidates = [(p, confirmed) for p in files if (confirmed := _confirmed(p, kind)) is not None]
    if len(candidates) > 1:
        # A README.txt or metadata.json beside the model shares its extension.
        looks_right = [p for p, confirmed in candidates if confirmed]
        if len(looks_right) == 1:
            return looks_right[0]
        # Counted, never named: the path may be any directory a caller
        # points at, and an error must not list what is in it.
        count = len(looks_right or candidates)
        raise UnsupportedModelError(
            f"{model_type} model directory {directory} holds {count} candidate model "
            "files; leave one, or point the model path at the file"
        )
    if candidates:
        return candidates[0][0]
    version = None if in_version else _triton.latest_version(directory)
    if version is not None:
        named = _triton.default_model_filename(directory)
        preferred = [named] if named else [f"model{ext}" for ext in kind.extensions]
        for file_name in preferred:
            if (version / file_name).is_file():
                return version / file_name
        return _pick_in_directory(
            directory=version, model_type=model_type, kind=kind, in_version=True
        )
    where = (
        f"the highest version directory of {model_type} model directory {directory.parent}"
        if in_version
        else f"{model_type} model directory {directory}"
    )
    message = f"{where} has no file ending in {_listing(kind)}"
    if kind.sniff is not None:
        message += f" nor any other file in which {kind.shape}"
    raise UnsupportedModelError(message)


def _confirmed(path: pathlib.Path, kind: _Kind) -> bool | None:
    """Whether ``path`` is a candidate: None when it is not one at all,
    else whether its content confirms it (ties between candidates go to
    confirmed ones)."""
    named = path.suffix.lower() in kind.extensions
    if kind.sniff is None:
        return True if named else None
    confirmed = kind.sniff(_sniff.head(path)) is not None
    return confirmed if named or confirmed else None


def _listing(kind: _Kind) -> str:
    return ", ".join(kind.extensions)
