"""The tokens file: who may call, with which role, on which namespaces and models.

A YAML file lists principals; each holds the SHA-256 of its bearer token,
never the token itself, so the file (a mounted Secret, a config repo) does
not hand out credentials to whoever reads it::

    principals:
      - name: ci
        tokenSha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        role: editor            # admin | editor | viewer
        namespaces: [team-a]    # or ["*"]; globs allowed
        models: ["fraud-*"]     # optional: only these model ids (globs)
      - name: billing-service   # no token: reached through an mTLS identity
        role: viewer
        namespaces: ["*"]

Keys may be camelCase or snake_case. The file is re-read when it changes
(size, mtime or inode), checked at most every ``reload_interval_s``; a
rewrite that does not parse is logged and ignored, and the last good file
stays in force, so a half-written file never locks everyone out (or in).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import time
from collections.abc import Callable, Mapping
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "Principal",
    "PrincipalTable",
    "Role",
    "TokensFile",
    "TokensFileError",
    "parse_tokens",
]

log = logging.getLogger(__name__)

Role = Literal["admin", "editor", "viewer"]


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """A caller meshserve knows: what it is called and what it may touch."""

    name: str
    role: Role
    namespaces: tuple[str, ...]
    """Namespace globs; ``("*",)`` is every namespace."""
    models: tuple[str, ...] | None = None
    """Model id globs (matched against the whole id); None is every model."""


@dataclasses.dataclass(frozen=True, slots=True)
class PrincipalTable:
    """One parsed tokens file."""

    tokens: tuple[tuple[bytes, Principal], ...]
    """(SHA-256 digest of the token, principal) for principals with a token."""
    by_name: Mapping[str, Principal]


class TokensFileError(ValueError):
    """The tokens file cannot be read or is not valid; the message says where."""


class _Entry(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    name: str = Field(min_length=1)
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    role: Role
    namespaces: tuple[str, ...] = Field(min_length=1)
    models: tuple[str, ...] | None = None

    @field_validator("namespaces", "models")
    @classmethod
    def _no_empty_globs(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not glob for glob in value):
            raise ValueError("empty entries are not allowed")
        return value


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    principals: tuple[_Entry, ...]


def parse_tokens(text: str, *, source: str) -> PrincipalTable:
    """Parse a tokens file's text. Raises TokensFileError naming ``source``."""
    # Error messages leave out the file's text and the values pydantic saw:
    # a raw token pasted where its hash belongs must not reach a log.
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TokensFileError(f"{source}: not valid YAML ({_yaml_problem(exc)})") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'top level'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise TokensFileError(f"{source}: {problems}") from None
    tokens: list[tuple[bytes, Principal]] = []
    by_name: dict[str, Principal] = {}
    seen_digests: set[bytes] = set()
    for entry in parsed.principals:
        if entry.name in by_name:
            raise TokensFileError(f"{source}: principal '{entry.name}' is listed twice")
        principal = Principal(
            name=entry.name, role=entry.role, namespaces=entry.namespaces, models=entry.models
        )
        by_name[entry.name] = principal
        if entry.token_sha256 is not None:
            digest = bytes.fromhex(entry.token_sha256)
            if digest in seen_digests:
                # Two principals with one token: which one a caller is would
                # depend on the file's order.
                raise TokensFileError(
                    f"{source}: principal '{entry.name}' shares its token with another"
                )
            seen_digests.add(digest)
            tokens.append((digest, principal))
    return PrincipalTable(tokens=tuple(tokens), by_name=by_name)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return type(exc).__name__


_Signature = tuple[int, int, int]
_MISSING: _Signature = (-1, -1, -1)


class TokensFile:
    """The principals in a tokens file, re-read when the file changes."""

    def __init__(
        self,
        *,
        path: pathlib.Path,
        table: PrincipalTable,
        signature: _Signature,
        reload_interval_s: float,
        clock: Callable[[], float],
    ) -> None:
        """Use :meth:`open`; this takes a table already read."""
        self._path = path
        self._table = table
        self._signature = signature
        self._failed_signature: _Signature | None = None
        self._interval = reload_interval_s
        self._clock = clock
        self._checked_at = clock()

    @classmethod
    def open(
        cls,
        path: pathlib.Path,
        *,
        reload_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> TokensFile:
        """Read ``path`` now. Raises TokensFileError if it is missing or invalid,
        so a server with a broken tokens file does not start."""
        try:
            signature = _signature(path)
            text = path.read_text()
        except OSError as exc:
            raise TokensFileError(f"{path}: cannot read the tokens file: {exc}") from None
        table = parse_tokens(text, source=str(path))
        return cls(
            path=path,
            table=table,
            signature=signature,
            reload_interval_s=reload_interval_s,
            clock=clock,
        )

    def current(self) -> PrincipalTable:
        """The principals now in force (re-reading the file if it changed)."""
        now = self._clock()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            self._reload()
        return self._table

    def _reload(self) -> None:
        try:
            signature = _signature(self._path)
        except OSError as exc:
            self._keep(_MISSING, f"cannot stat it: {exc}")
            return
        if signature in (self._signature, self._failed_signature):
            return
        try:
            table = parse_tokens(self._path.read_text(), source=str(self._path))
        except (OSError, TokensFileError) as exc:
            self._keep(signature, str(exc))
            return
        self._table = table
        self._signature = signature
        self._failed_signature = None
        log.info("tokens file %s reloaded: %d principals", self._path, len(table.by_name))

    def _keep(self, signature: _Signature, reason: str) -> None:
        # Log a broken version once, not at every check while it stays broken.
        if signature != self._failed_signature:
            log.warning(
                "tokens file %s not reloaded (%s); the previous version stays in force",
                self._path,
                reason,
            )
        self._failed_signature = signature


def _signature(path: pathlib.Path) -> _Signature:
    stat = os.stat(path)
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
