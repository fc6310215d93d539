"""pvc storage: a model used where it is on a mounted claim, checked in
place (nothing is copied)."""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Mapping

from meshserve.errors import ArtifactNotFoundError, ArtifactRejectedError, StorageConfigError
from meshserve.storage._paths import (
    check_no_escaping_symlinks,
    safe_relative_path,
    tree_size,
    within,
)
from meshserve.storage._providers import PvcConfig
from meshserve.storage._pull_plan import PullPlan, check_pin

__all__ = ["resolve_pvc"]


def resolve_pvc(
    plan: PullPlan,
    *,
    pvc_root: pathlib.Path | None,
    max_bytes: int,
    claims: Mapping[str, pathlib.Path] | None = None,
) -> tuple[pathlib.Path, int]:
    """A pvc path, checked in place (blocking): inside its claim, no
    symlink out of it, within the size limit, matching its pin. A claim
    named in ``claims`` is that directory; any other is ``<pvc_root>/NAME``."""
    config = plan.resolved.config
    assert isinstance(config, PvcConfig)
    claims = claims or {}
    if pvc_root is None and not claims:
        raise StorageConfigError(
            f"{plan.where}: pvc storage needs storage.pvcRoot or storage.pvcClaims set "
            "(`meshserve up --pvc-root DIR` or `--pvc-root NAME=DIR`)"
        )
    if not config.name:
        raise StorageConfigError(f"{plan.where}: no claim name ('name')")
    claim = safe_relative_path(config.name, where=plan.where)
    if len(claim.parts) != 1:
        raise ArtifactRejectedError(f"{plan.where}: claim name '{config.name}' refused")
    if config.name in claims:
        claim_root = claims[config.name]
        if not claim_root.is_dir():
            raise ArtifactNotFoundError(f"{plan.where}: claim '{config.name}' has no directory")
    else:
        if pvc_root is None:
            known = ", ".join(sorted(claims))
            raise ArtifactNotFoundError(f"{plan.where}: no claim '{config.name}' (claims: {known})")
        claim_root = pvc_root / claim
        if not claim_root.is_dir():
            raise ArtifactNotFoundError(
                f"{plan.where}: no claim '{config.name}' under the pvc root"
            )
        if not within(claim_root, pvc_root):
            # A claim that is itself a symlink out of the root: the checks
            # below resolve the path and the claim alike, so they would pass.
            raise ArtifactRejectedError(
                f"{plan.where}: claim '{config.name}' resolves outside the pvc root; refused"
            )
    target = claim_root / plan.path if plan.path else claim_root
    if not target.exists() and not target.is_symlink():
        raise ArtifactNotFoundError(f"{plan.where}: not found")
    if not within(target, claim_root):
        raise ArtifactRejectedError(
            f"{plan.where}: the path resolves outside the claim through a symlink; refused"
        )
    check_no_escaping_symlinks(target, root=claim_root, where=plan.where)
    size = tree_size(target)
    if size > max_bytes:
        raise ArtifactRejectedError(
            f"{plan.where}: {size} bytes, more than the {max_bytes} a model may have; refused"
        )
    if plan.sha256 is not None:
        digest = _file_sha256(target) if target.is_file() else None
        check_pin(plan, is_directory=not target.is_file(), digest=digest)
    return target, size


def _file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()
