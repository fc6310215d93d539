"""How the MLServer adapter lays a model out for MLServer's model repository.

Each model gets a directory of its own under the adapter's models dir, named
from its id (:func:`model_dir_name`), holding ``model-settings.json``
(:func:`model_settings`) and a link to the artifact. The settings name the
model by its id, which MLServer then answers to: the instance injects the
id into each request's ``model_name``. The artifact is linked, not named by
its absolute path, because MLServer parses ``parameters.uri`` as a URL
(a ``#``, ``?`` or ``;`` in a path would cut it short); a relative uri
resolves against the settings file's directory.

Sizes follow ModelMesh's MLServer adapter: bytes on disk (the model key's
``disk_size_bytes``, else the artifact's size) times a multiplier, 1.25 by
default.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from meshserve.errors import UnsupportedModelError
from meshserve.protocol.model_key import ModelKey
from meshserve.runtime._builtin import resolve_model_type
from meshserve.runtime._formats import ModelFormat, find_artifact
from meshserve.runtime._records import ModelSpec

__all__ = [
    "DEFAULT_SIZE_MULTIPLIER",
    "IMPLEMENTATIONS",
    "MODEL_SETTINGS",
    "MLServerModel",
    "model_dir_name",
    "model_settings",
    "read_model_name",
    "remove_model_dir",
    "resolve_model",
    "size_estimate",
    "write_model_dir",
]

MODEL_SETTINGS = "model-settings.json"
"""The file MLServer's repository looks for, at any depth under its root."""

IMPLEMENTATIONS: Mapping[str, str] = MappingProxyType({"sklearn": "mlserver_sklearn.SKLearnModel"})
"""Model type -> the MLServer runtime class that loads it. Only sklearn:
mlserver-xgboost and mlserver-lightgbm pull heavy dependencies (xgboost's
CUDA build), and the built-in runtime serves those formats already."""

DEFAULT_SIZE_MULTIPLIER = 1.25
"""ModelMesh's MLServer adapter: memory is about 1.25 times the bytes on disk
(its MODELSIZE_MULTIPLIER)."""

_MAX_DIR_NAME = 200  # below the 255 bytes a file name may have
_DIGEST_CHARS = 32


@dataclass(frozen=True, slots=True)
class MLServerModel:
    """A model MLServer can load: its runtime class and artifact file."""

    model_id: str
    implementation: str
    artifact: pathlib.Path
    disk_bytes: int
    """The model key's ``disk_size_bytes`` when given, else the artifact's size."""


def model_dir_name(model_id: str) -> str:
    """A directory name for ``model_id``, distinct for distinct ids.

    Ids may hold ``/``, spaces or anything else: they are percent-encoded
    (a leading ``.`` too, since MLServer's search skips hidden directories).
    An encoding too long for a file name keeps its start, then ``+`` (which
    the encoding never produces) and a digest of the id.
    """
    if not model_id:
        raise UnsupportedModelError("the model id is empty")
    encoded = urllib.parse.quote(model_id, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) <= _MAX_DIR_NAME:
        return encoded
    digest = hashlib.sha256(model_id.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{encoded[: _MAX_DIR_NAME - _DIGEST_CHARS - 1]}+{digest}"


def resolve_model(spec: ModelSpec) -> MLServerModel:
    """The runtime class and artifact for a load request.

    Raises UnsupportedModelError (nothing loaded, nothing written) for a
    type MLServer is not set up for here, or no joblib/pickle file at the
    path: MLServer's sklearn runtime loads those only (not ``.skops``).
    """
    model_type = resolve_model_type(spec)
    implementation = IMPLEMENTATIONS.get(model_type)
    if implementation is None:
        raise UnsupportedModelError(
            f"model type '{model_type}' is not served by the MLServer runtime; "
            f"supported types: {', '.join(IMPLEMENTATIONS)}"
        )
    artifact = find_artifact(model_type=model_type, model_path=pathlib.Path(spec.model_path))
    if artifact.format is not ModelFormat.PICKLE:
        raise UnsupportedModelError(
            f"{artifact.path}: MLServer's sklearn runtime loads joblib/pickle files "
            "(.joblib, .pkl, .pickle) only; serve this one with the built-in runtime"
        )
    key = ModelKey.parse(spec.model_key, error=UnsupportedModelError)
    disk = key.disk_size_bytes if key.disk_size_bytes is not None else artifact.disk_size
    return MLServerModel(
        model_id=spec.model_id,
        implementation=implementation,
        artifact=artifact.path.resolve(),
        disk_bytes=disk,
    )


def size_estimate(*, disk_bytes: int | None, multiplier: float, default_bytes: int) -> int:
    """Bytes a model is taken to use once loaded: ``disk_bytes`` times
    ``multiplier``, or ``default_bytes`` when the size on disk is unknown."""
    if disk_bytes is None:
        return default_bytes
    return max(1, int(disk_bytes * multiplier))


def model_settings(*, model_id: str, implementation: str, uri: str) -> dict[str, Any]:
    """The contents of a model's ``model-settings.json``."""
    return {"name": model_id, "implementation": implementation, "parameters": {"uri": uri}}


def write_model_dir(root: pathlib.Path, model: MLServerModel) -> pathlib.Path:
    """Write the model's directory under ``root`` afresh and return it.

    The settings file appears whole (written aside, then renamed): MLServer
    reads every settings file under its root on each load, and must never
    read a half-written one.
    """
    directory = root / model_dir_name(model.model_id)
    remove_model_dir(directory)
    directory.mkdir(parents=True)
    link = directory / f"model{model.artifact.suffix.lower()}"
    link.symlink_to(model.artifact)
    settings = model_settings(
        model_id=model.model_id, implementation=model.implementation, uri=f"./{link.name}"
    )
    partial = directory / f".{MODEL_SETTINGS}.partial"
    partial.write_text(json.dumps(settings, indent=2) + "\n")
    os.replace(partial, directory / MODEL_SETTINGS)
    return directory


def read_model_name(directory: pathlib.Path) -> str | None:
    """The model name in a directory's settings file (None: none readable)."""
    try:
        name = json.loads((directory / MODEL_SETTINGS).read_text()).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def remove_model_dir(directory: pathlib.Path) -> None:
    """Remove a model's directory (its link only, never the artifact)."""
    if directory.is_symlink() or directory.is_file():
        directory.unlink()
    elif directory.exists():
        shutil.rmtree(directory)
