"""Triton's model repository layout: ``<model>/[config.pbtxt]`` + ``<version>/model.onnx``.

ModelMesh Serving hands Triton a model directory of that shape, so models
stored for it keep it: numbered version directories, each holding the
model file, and optionally a ``config.pbtxt`` beside them. Triton's default
version policy serves the highest version, and so does meshserve. Of
``config.pbtxt`` only ``default_model_filename`` is read (which file in the
version directory is the model); inputs, outputs and batching come from the
model itself.
"""

from __future__ import annotations

import pathlib
import re

__all__ = ["CONFIG", "default_model_filename", "latest_version"]

CONFIG = "config.pbtxt"
# A config is a few KB; more is not a config worth reading.
_CONFIG_BYTES = 64 * 1024
_DEFAULT_FILENAME = re.compile(rb'^\s*default_model_filename\s*:\s*"([^"/\\]+)"', re.MULTILINE)


def latest_version(directory: pathlib.Path) -> pathlib.Path | None:
    """The highest-numbered version directory in ``directory``, if any."""
    versions = [
        child
        for child in directory.iterdir()
        if child.name.isascii() and child.name.isdigit() and child.is_dir()
    ]
    return max(versions, key=lambda child: int(child.name), default=None)


def default_model_filename(directory: pathlib.Path) -> str | None:
    """The model file name ``directory/config.pbtxt`` names, if it names one."""
    try:
        with (directory / CONFIG).open("rb") as f:
            text = f.read(_CONFIG_BYTES)
    except OSError:
        return None
    match = _DEFAULT_FILENAME.search(text)
    return None if match is None else match.group(1).decode(errors="replace")
