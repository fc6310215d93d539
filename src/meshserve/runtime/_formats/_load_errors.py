"""A format library's load error, fit to show a caller.

A library that cannot read a file says so in its own words, and some of
those words are the file's: xgboost quotes the bytes around a JSON error
and appends a native stack trace with load addresses; Python errors quote
``b'...'`` byte strings. The model path may name any file a caller could
point at, so what reaches a status keeps the library's first line only,
with byte dumps and addresses masked, bounded in length.
"""

from __future__ import annotations

import pathlib
import re

from meshserve.errors import CorruptModelError

__all__ = ["MAX_MESSAGE_CHARS", "library_message", "load_failed"]

MAX_MESSAGE_CHARS = 240
"""Characters of a library's message kept: enough for what went wrong."""

# xgboost's "[12:00:00] /src/common/json.cc:409: " prefix.
_LOG_PREFIX = re.compile(r"^\[\d{2}:\d{2}:\d{2}\]\s+\S+:\d+:\s*")
_BYTES_LITERAL = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{5,}\b")


def library_message(error: BaseException) -> str:
    """``error``'s message as a caller may see it: its first line, before
    any stack trace, byte strings and addresses masked, at most
    :data:`MAX_MESSAGE_CHARS` characters."""
    text = str(error).split("Stack trace:", 1)[0]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _LOG_PREFIX.sub("", line)
    line = _BYTES_LITERAL.sub("b'...'", line)
    line = _ESCAPED_BYTES.sub("...", line)
    line = _ADDRESS.sub("0x...", line)
    line = "".join(c if c.isprintable() else "?" for c in line)
    if len(line) > MAX_MESSAGE_CHARS:
        line = line[: MAX_MESSAGE_CHARS - 3] + "..."
    return line or type(error).__name__


def load_failed(library: str, path: pathlib.Path, error: BaseException) -> CorruptModelError:
    """The CorruptModelError for ``library`` failing to load ``path``."""
    return CorruptModelError(
        f"{library} model {path} could not be loaded: {library_message(error)}"
    )
