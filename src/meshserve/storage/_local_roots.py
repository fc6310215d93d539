"""Where a model given by a plain local path may lie.

A registration may name a file on the server (``models register --path``).
When local paths are restricted, such a path must be absolute and resolve
(symlinks followed) under one of the allowed roots: the namespace's own
roots when it has some, else ``storage.localRoots`` and the pvc root. A
refusal names the roots, never what is at the path.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from meshserve.storage._paths import within
from meshserve.storage._settings import StorageSettings

__all__ = ["LocalRoots"]


@dataclass(frozen=True, slots=True)
class LocalRoots:
    """The allowed roots of local paths; ``shared`` None means any path (for
    namespaces without roots of their own)."""

    shared: tuple[pathlib.Path, ...] | None
    per_namespace: Mapping[str, tuple[pathlib.Path, ...]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: StorageSettings, *, auth_enabled: bool) -> LocalRoots:
        """The roots ``settings`` allow: ``local_roots`` (and the pvc root
        and claims) when set; with auth on and none set, the pvc root and
        claims alone; else any."""
        pvc = _pvc_dirs(settings)
        shared: tuple[pathlib.Path, ...] | None = None
        if settings.local_roots is not None:
            shared = (*settings.local_roots, *pvc)
        elif auth_enabled:
            shared = pvc
        return cls(shared=shared, per_namespace=dict(settings.namespace_local_roots))

    @classmethod
    def for_resources(cls, settings: StorageSettings) -> LocalRoots:
        """The roots of a Predictor's or InferenceService's local path: the
        configured ones only, auth or not (a resource never reads the
        server's files outside ``local_roots``, the pvc root and claims)."""
        return cls.from_settings(settings, auth_enabled=True)

    def roots_for(self, namespace: str) -> tuple[pathlib.Path, ...] | None:
        """The roots of ``namespace``'s local paths (None: any path)."""
        return self.per_namespace.get(namespace, self.shared)

    def refusal(self, path: str, *, namespace: str) -> str | None:
        """Why ``path`` may not be loaded for a model of ``namespace`` (None:
        it may). Reads no more than the path's resolution: nothing under it."""
        roots = self.roots_for(namespace)
        if roots is None:
            return None
        if not roots:
            return (
                "no local paths are allowed: no storage.localRoots and no pvc root is "
                "configured (`meshserve up --pvc-root DIR`); use a storage URI"
            )
        allowed = ", ".join(str(root) for root in roots)
        if "\x00" in path or not os.path.isabs(path):
            return (
                "a local model path must be absolute and lie under the allowed roots "
                f"({allowed}); or use a storage URI"
            )
        if not any(within(pathlib.Path(path), root) for root in roots):
            return f"the local model path is outside the allowed roots ({allowed})"
        return None


def _pvc_dirs(settings: StorageSettings) -> tuple[pathlib.Path, ...]:
    root = (settings.pvc_root,) if settings.pvc_root is not None else ()
    return (*root, *settings.pvc_claims.values())
