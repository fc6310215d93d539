"""The mesh secret of the server commands: checked at start, made by ``up``."""

from __future__ import annotations

import click

from meshserve.security import MeshSecret, MeshSecretError
from meshserve.settings import Settings

__all__ = ["with_mesh_secret"]


def with_mesh_secret(settings: Settings, *, create: bool) -> Settings:
    """Check ``mesh.secretFile`` (a usage error when it is unusable); with
    ``create`` (``up``), make ``<data_dir>/mesh.secret`` once when none is
    given, unless the store is an etcd other machines may share (their
    instances then share the secret the store keeps).

    The file is then named by its absolute path, so instance processes
    ``up`` starts with data dirs of their own (runtime pools,
    ``--instances``) read the same secret from it. Never the secret itself:
    it would reach the runtimes' environment.
    """
    path = settings.mesh.secret_file
    if path is None and create and not settings.store.url.startswith("etcd://"):
        path = MeshSecret.in_data_dir(settings.data_dir)
    if path is None:
        return settings
    try:
        MeshSecret.from_file(path)
    except MeshSecretError as exc:
        raise click.UsageError(str(exc)) from None
    mesh = settings.mesh.model_copy(update={"secret_file": path.absolute()})
    return settings.model_copy(update={"mesh": mesh})
