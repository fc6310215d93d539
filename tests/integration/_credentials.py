"""Every credential the integration tests hand to a server, so that the
session can check, at its end, that none was ever written to a log."""

from __future__ import annotations

import pathlib

__all__ = ["credential", "leaked_credentials"]

_CREDENTIALS: set[str] = set()


def credential(value: str) -> str:
    """Remember ``value`` as a credential; returns it."""
    _CREDENTIALS.add(value)
    return value


def leaked_credentials(root: pathlib.Path) -> list[str]:
    """``file: credential`` for every log under ``root`` that holds one."""
    leaks = []
    for log in sorted(root.rglob("*.log")):
        if not log.is_file():
            continue
        text = log.read_text(errors="replace")
        leaks += [f"{log}: {secret[:4]}..." for secret in sorted(_CREDENTIALS) if secret in text]
    return leaks
