"""Path checks: nothing a store names may land outside the model's directory."""

from __future__ import annotations

import os
import pathlib
import posixpath
import urllib.parse

from meshserve.errors import ArtifactRejectedError

__all__ = [
    "check_no_escaping_symlinks",
    "check_remote_path",
    "model_dir_name",
    "safe_relative_path",
    "tree_size",
    "within",
]


def safe_relative_path(name: str, *, where: str) -> pathlib.PurePosixPath:
    """``name`` (an object key below a prefix, a path in a claim) as a relative
    path that stays inside its root. Absolute paths, ``..`` and drive or
    backslash tricks are refused; ``where`` names the location in the error."""
    if not name or "\x00" in name:
        raise ArtifactRejectedError(f"{where}: empty or NUL-bearing path refused")
    if "\\" in name:
        raise ArtifactRejectedError(f"{where}: path '{name}' has a backslash; refused")
    if name.startswith("/"):
        raise ArtifactRejectedError(f"{where}: absolute path '{name}' refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArtifactRejectedError(f"{where}: path '{name}' escapes with '..'; refused")
    if not parts:
        raise ArtifactRejectedError(f"{where}: path '{name}' names no file")
    return pathlib.PurePosixPath(*parts)


def check_remote_path(path: str, *, where: str) -> str:
    """A model path inside a store, normalised ('' is the store's root); ``..``
    and absolute paths are refused, so no prefix can reach a sibling's data."""
    stripped = path.strip()
    if not stripped.strip("/"):
        return ""
    trailing = "/" if stripped.endswith("/") else ""
    return str(safe_relative_path(stripped.lstrip("/"), where=where)) + trailing


def model_dir_name(model_id: str) -> str:
    """A single, safe path component for ``model_id``: model ids may contain
    '/' or start with '.', and must neither nest nor hide."""
    name = urllib.parse.quote(model_id, safe="-_.~@+=,")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if not name:
        raise ArtifactRejectedError("empty model id")
    return name


def check_no_escaping_symlinks(tree: pathlib.Path, *, root: pathlib.Path, where: str) -> None:
    """Refuse ``tree`` if it, or anything below it, is a symlink resolving
    outside ``root`` (or a dangling one, which could be pointed outside later)."""
    real_root = os.path.realpath(root)
    links = [tree] if tree.is_symlink() else []
    if tree.is_dir():
        for dirpath, dirnames, filenames in os.walk(tree):
            links.extend(
                pathlib.Path(dirpath, name)
                for name in dirnames + filenames
                if pathlib.Path(dirpath, name).is_symlink()
            )
    for link in links:
        real = os.path.realpath(link)
        if not os.path.exists(real) or not _within(real, real_root):
            rel = posixpath.relpath(str(link), str(root))
            raise ArtifactRejectedError(
                f"{where}: symlink '{rel}' points outside the model directory; refused"
            )


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def within(path: pathlib.Path, root: pathlib.Path) -> bool:
    """Whether ``path`` resolves inside ``root`` (both resolved)."""
    return _within(os.path.realpath(path), os.path.realpath(root))


def tree_size(path: pathlib.Path) -> int:
    """Bytes of the files at or below ``path`` (a linked file counts; a
    linked directory is not entered)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            entry = pathlib.Path(dirpath, name)
            if entry.is_file():
                total += entry.stat().st_size
    return total
