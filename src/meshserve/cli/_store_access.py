"""How commands that work on the mesh's store find it: the store of the
``up`` running in ``--data-dir`` (its endpoints.json names it), or
``--store``."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

import click

from meshserve.settings import Settings, load_settings

__all__ = ["store_options", "store_settings"]

F = TypeVar("F", bound=Callable[..., Any])

_OPTIONS = (
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=pathlib.Path),
        default=None,
        help="Data dir of the running `up`  [default: ./.meshserve]",
    ),
    click.option("--store", default=None, metavar="URL", help="etcd://HOST:PORT or sqlite:///PATH"),
    click.option("--root-prefix", default=None, help="Namespace inside the store."),
)


def store_options(command: F) -> F:
    for option in reversed(_OPTIONS):
        command = option(command)
    return command


def store_settings(
    data_dir: pathlib.Path | None, store: str | None, root_prefix: str | None
) -> Settings:
    """Settings naming the store to open."""
    settings = load_settings(
        overrides={"data_dir": data_dir, "store": {"root_prefix": root_prefix}}
    )
    if store is None:
        endpoints = settings.data_dir / "endpoints.json"
        if endpoints.exists():
            store = json.loads(endpoints.read_text()).get("store")
    if store is None:
        return settings
    return settings.model_copy(update={"store": settings.store.model_copy(update={"url": store})})
