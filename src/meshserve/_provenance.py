"""Where each setting's value came from: default, file, env or flag.

The settings are merged from layers (file < env < flags); a setting's source
is the highest layer holding a value for it, or ``default`` when none does.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["Layer", "Source", "SourceKind", "env_variable", "setting_paths", "source_of"]

SourceKind = Literal["default", "file", "env", "flag"]
SettingPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """Where one setting's value came from."""

    kind: SourceKind
    origin: str = ""
    """The environment variable (``env``), or the model-serving-config key
    (``file``), when there is one to name."""

    def __str__(self) -> str:
        return f"{self.kind} {self.origin}" if self.origin else self.kind


def _no_origin(path: SettingPath) -> str:
    return ""


@dataclass(frozen=True, slots=True)
class Layer:
    """One source's values, nested and snake_case like the settings."""

    kind: SourceKind
    values: Mapping[str, Any]
    origin_of: Callable[[SettingPath], str] = field(default=_no_origin)

    def holds(self, path: SettingPath) -> bool:
        node: Any = self.values
        for part in path:
            if not isinstance(node, Mapping):
                # A whole group given as one value (``tls: null``) sets its fields.
                return True
            if part not in node:
                return False
            node = node[part]
        return True


def source_of(path: SettingPath, layers: typing.Sequence[Layer]) -> Source:
    """The highest of ``layers`` (lowest precedence first) holding ``path``."""
    for layer in reversed(layers):
        if layer.holds(path):
            return Source(layer.kind, layer.origin_of(path))
    return Source("default")


def setting_paths(model: type[BaseModel], prefix: SettingPath = ()) -> Iterator[SettingPath]:
    """Every setting of ``model`` as a path of field names, groups walked
    (an optional group, ``TlsSettings | None``, included)."""
    for name, info in model.model_fields.items():
        candidates = (info.annotation, *typing.get_args(info.annotation))
        groups = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if groups:
            yield from setting_paths(groups[0], (*prefix, name))
        else:
            yield (*prefix, name)


def env_variable(
    path: SettingPath, environ: Mapping[str, str], *, prefix: str, delimiter: str
) -> str:
    """The variable that set ``path``: ``PREFIX_A__B``, or the one holding
    its whole group as JSON (``PREFIX_A``), or those setting keys inside it
    (a dict setting, ``PREFIX_A__B__KEY``). Names match case-insensitively,
    as pydantic-settings reads them."""
    names = {name.lower(): name for name in environ}
    for end in range(len(path), 0, -1):
        candidate = (prefix + delimiter.join(path[:end])).lower()
        if candidate in names:
            return names[candidate]
    inner = (prefix + delimiter.join(path) + delimiter).lower()
    return ",".join(sorted(names[name] for name in names if name.startswith(inner)))
