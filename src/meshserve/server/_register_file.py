"""``--register FILE``: models an instance registers as it starts."""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from meshserve.errors import MeshServeError
from meshserve.mesh import Instance

__all__ = ["ModelEntry", "load_register_file", "register_models"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model listed in a ``--register`` file."""

    name: str
    type: str
    path: str
    key: str = ""
    load_now: bool = False


def load_register_file(path: pathlib.Path) -> list[ModelEntry]:
    """Read ``models: [{name, type, path[, key, loadNow]}]``; relative paths
    are taken from the file's directory."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
        raise ValueError(f"{path}: expected a mapping with a 'models' list")
    entries = []
    for index, item in enumerate(data.get("models", [])):
        if not isinstance(item, dict) or not {"name", "type", "path"} <= item.keys():
            raise ValueError(f"{path}: models[{index}] needs name, type and path")
        model_path = pathlib.Path(str(item["path"]))
        if not model_path.is_absolute():
            model_path = (path.parent / model_path).resolve()
        entries.append(
            ModelEntry(
                name=str(item["name"]),
                type=str(item["type"]),
                path=str(model_path),
                key=str(item.get("key", "")),
                load_now=bool(item.get("loadNow", item.get("load_now", False))),
            )
        )
    return entries


async def register_models(instance: Instance, entries: Iterable[ModelEntry]) -> None:
    """Register each entry; one that fails is logged, and the rest still go."""
    for entry in entries:
        try:
            await instance.register_model(
                entry.name,
                type=entry.type,
                path=entry.path,
                key=entry.key,
                load_now=entry.load_now,
            )
        except MeshServeError as exc:
            log.error("cannot register %s from the register file: %s", entry.name, exc)
