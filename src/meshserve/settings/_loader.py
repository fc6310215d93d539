"""Building :class:`~meshserve.settings.Settings` from its sources: a config
file (meshserve's shape in either spelling, or ModelMesh Serving's
model-serving-config), ``MESHSERVE_*`` environment variables and flags, and
saying where each value came from."""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, get_args

import yaml
from pydantic import BaseModel
from pydantic.alias_generators import to_camel, to_snake

from meshserve._provenance import Layer, Source, env_variable, setting_paths, source_of
from meshserve._serving_config import is_serving_config, read_serving_config
from meshserve.settings._root import Settings

__all__ = ["load_settings", "load_settings_with_sources", "setting_name"]

# The logger the docs name for a model-serving-config's ignored keys.
_log = logging.getLogger("meshserve.settings")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    *, config_file: pathlib.Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build the settings from a YAML file, the environment and flag overrides.

    ``overrides`` holds flag values as nested dicts (``{"runtime":
    {"capacity_bytes": 1024}}``); entries whose value is None are ignored, so
    unset flags never mask the file or the environment.
    """
    settings, _ = load_settings_with_sources(config_file=config_file, overrides=overrides)
    return settings


def load_settings_with_sources(
    *, config_file: pathlib.Path | None = None, overrides: dict[str, Any] | None = None
) -> tuple[Settings, dict[str, Source]]:
    """``load_settings``, and where each setting's value came from, by
    dotted camelCase name (``server.grpcPort``; see ``setting_name``).

    Keys of a model-serving-config file that meshserve does not act on are
    logged as warnings (logger ``meshserve.settings``).
    """
    layers = [
        *_file_layers(config_file),
        Layer(
            "env",
            Settings().model_dump(exclude_unset=True),
            lambda path: env_variable(path, os.environ, prefix=_ENV_PREFIX, delimiter="__"),
        ),
        Layer("flag", _drop_none(overrides or {})),
    ]
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, dict(layer.values))
    settings = Settings(**merged)
    sources = {setting_name(path): source_of(path, layers) for path in setting_paths(Settings)}
    return settings, sources


def setting_name(path: tuple[str, ...]) -> str:
    """A setting's dotted camelCase name, as the README and config files
    spell it: ``("runtime", "model_loading_timeout_ms")`` ->
    ``runtime.modelLoadingTimeoutMillis``."""
    return ".".join(_CAMEL.get(part, to_camel(part)) for part in path)


_ENV_PREFIX = "MESHSERVE_"


def _file_layers(config_file: pathlib.Path | None) -> list[Layer]:
    if config_file is None:
        return []
    loaded = yaml.safe_load(config_file.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{config_file}: expected a mapping at the top level")
    if not is_serving_config(loaded, meshserve_keys=_TOP_LEVEL_KEYS):
        _refuse_mixed_shapes(config_file, loaded)
        return [Layer("file", _snake_keys(loaded))]
    serving = read_serving_config(loaded, base_dir=config_file.parent.absolute())
    for warning in serving.warnings():
        _log.warning("%s: %s", config_file, warning)
    origins = serving.origins
    return [Layer("file", serving.values, lambda path: origins.get(path, ""))]


def _refuse_mixed_shapes(config_file: pathlib.Path, loaded: dict[str, Any]) -> None:
    # Read as meshserve's, the model-serving-config keys would each be refused
    # as an unknown setting, which hides what went wrong.
    theirs = sorted(str(key) for key in loaded if str(key).lower() not in _TOP_LEVEL_KEYS)
    theirs = [key for key in theirs if is_serving_config({key: None}, meshserve_keys=set())]
    if theirs:
        ours = sorted(str(key) for key in loaded if str(key).lower() in _TOP_LEVEL_KEYS)
        raise ValueError(
            f"{config_file}: mixes meshserve settings ({', '.join(ours)}) with "
            f"model-serving-config keys ({', '.join(theirs)}); use one shape"
        )


def _snake_keys(values: dict[str, Any], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """Config files may use ModelMesh's camelCase; merging needs one spelling.

    Only setting names are respelled: the keys of a mapping-valued setting
    (``auth.mtlsIdentities``' certificate names, ``runtime.commandEnv``'s
    variables) are data and stay as written."""
    fields = (model or Settings).model_fields
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = _ALIASES.get(key, to_snake(key))
        group = _group_of(fields[name].annotation) if name in fields else None
        out[name] = _snake_keys(value, group) if isinstance(value, dict) and group else value
    return out


def _group_of(annotation: Any) -> type[BaseModel] | None:
    """The settings group a field holds (``TlsSettings | None`` too), if any."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


# camelCase names that do not convert mechanically to the field name.
_ALIASES = {"modelLoadingTimeoutMillis": "model_loading_timeout_ms"}
_CAMEL = {snake: camel for camel, snake in _ALIASES.items()}

# Top-level setting names in both spellings, lowercased: how a config file's
# shape is told.
_TOP_LEVEL_KEYS = {
    spelling.lower() for name in Settings.model_fields for spelling in (name, to_camel(name))
}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out
