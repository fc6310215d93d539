"""The sealing key of the server commands: checked at start, made by ``up``."""

from __future__ import annotations

import click

from meshserve.security import SEALING_KEY_FILE, SealingKeyError, load_sealing_key
from meshserve.settings import Settings

__all__ = ["with_sealing_key"]


def with_sealing_key(settings: Settings, *, create: bool) -> Settings:
    """Check the sealing key the settings give (a usage error when it is
    malformed, set twice or in a file others may read); with ``create``
    (``up``), make ``<data_dir>/sealing.key`` once when none is given.

    A key kept in a file is then named by its absolute path, so instance
    processes ``up`` starts with data dirs of their own (runtime pools,
    ``--instances``) use the same key. A key given in the environment
    reaches them through their inherited environment.
    """
    try:
        key = load_sealing_key(settings.security, data_dir=settings.data_dir, create=create)
    except SealingKeyError as exc:
        raise click.UsageError(str(exc)) from None
    security = settings.security
    if key is None or security.sealing_key.get_secret_value():
        return settings
    path = (security.sealing_key_file or settings.data_dir / SEALING_KEY_FILE).absolute()
    return settings.model_copy(
        update={"security": security.model_copy(update={"sealing_key_file": path})}
    )
