"""Files that hold a key: read only when their owner alone may read them,
made once, atomically, mode 0600.

The sealing key and the mesh secret both live in such files; a process
that may read one is trusted with everything it guards, so a file others
may read is refused rather than used.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import stat
from collections.abc import Callable

__all__ = ["create_key_file", "read_key_file"]


def read_key_file(path: pathlib.Path, *, what: str, error: Callable[[str], Exception]) -> str:
    """The text of ``path``, a regular file of mode 0600 or stricter; raises
    ``error(message)`` otherwise (the message names ``what`` and the path,
    never the content)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise error(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise error(
            f"{what} {path} has mode {mode:04o}; it must be 0600 or stricter (chmod 600 {path})"
        )
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is unreadable: {exc}") from None


def create_key_file(path: pathlib.Path, text: Callable[[], str]) -> None:
    """Write ``text()`` to ``path`` (mode 0600) unless the file is there;
    several processes racing get one file (the first link wins) and never a
    partial one."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as out:
            out.write(text())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
