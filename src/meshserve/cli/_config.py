"""``meshserve config``: the mesh's dynamic settings, kept in its store.

Instances read them from their watched mirror, so a change takes effect
without a restart (ModelMesh keeps the same keys under ``config/``).
``config show`` prints the static settings instead (``_config_show``).
"""

from __future__ import annotations

import asyncio
import pathlib

import click

from meshserve.cli._config_show import show
from meshserve.cli._store_access import store_options, store_settings
from meshserve.registry import Registry
from meshserve.settings import Settings
from meshserve.store import open_store

__all__ = ["DYNAMIC_KEYS", "config"]

DYNAMIC_KEYS: dict[str, str] = {
    "scaleup_rpm_threshold": "requests per minute per copy above which a model gets a copy",
    "logger_level": "log level of every instance (DEBUG, INFO, WARNING, ERROR)",
}

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _validate(key: str, value: str) -> str:
    if key not in DYNAMIC_KEYS:
        known = ", ".join(sorted(DYNAMIC_KEYS))
        raise click.BadParameter(f"unknown key {key!r}; dynamic keys: {known}", param_hint="KEY")
    if key == "scaleup_rpm_threshold" and (not value.isdigit() or int(value) <= 0):
        raise click.BadParameter(
            f"{key} must be a positive whole number, not {value!r}", param_hint="VALUE"
        )
    if key == "logger_level" and value.upper() not in _LEVELS:
        raise click.BadParameter(f"{key} must be one of {', '.join(_LEVELS)}", param_hint="VALUE")
    return value.upper() if key == "logger_level" else value


async def _with_registry(settings: Settings, key: str, value: str | None) -> dict[str, str]:
    async with open_store(settings) as store, Registry.open(store) as registry:
        if value is not None:
            await registry.set_config(key, value)
        return {k: v for k in DYNAMIC_KEYS if (v := registry.config(k)) is not None}


@click.group()
def config() -> None:
    """Dynamic settings of a running mesh (no restart needed), and the
    effective settings with their sources (show)."""


config.add_command(show)


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@store_options
def set_(
    key: str, value: str, data_dir: pathlib.Path | None, store: str | None, root_prefix: str | None
) -> None:
    """Set KEY to VALUE for every instance of the mesh."""
    value = _validate(key, value)
    asyncio.run(_with_registry(store_settings(data_dir, store, root_prefix), key, value))
    click.echo(f"{key} = {value}")


@config.command(name="get")
@click.argument("key", required=False)
@store_options
def get(
    key: str | None, data_dir: pathlib.Path | None, store: str | None, root_prefix: str | None
) -> None:
    """Print the dynamic keys that are set (or one of them)."""
    if key is not None and key not in DYNAMIC_KEYS:
        _validate(key, "")
    values = asyncio.run(_with_registry(store_settings(data_dir, store, root_prefix), "", None))
    for name, value in sorted(values.items()):
        if key is None or name == key:
            click.echo(f"{name} = {value}")
    if key is not None and key not in values:
        click.echo(f"{key} is not set (default applies)")
