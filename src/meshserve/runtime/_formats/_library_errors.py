"""A format library's errors, fit to show a caller.

A library that cannot read a file says so in its own words, and some of
those words are the file's: xgboost quotes the bytes around a JSON error
and appends a native stack trace with load addresses; Python errors quote
``b'...'`` byte strings. The model path may name any file a caller could
point at, so what reaches a status keeps the library's first line only,
with byte dumps and addresses masked, bounded in length.

A model that loaded and then raises on a request raises because of that
request (a wrong feature count, NaN where the estimator takes none, zero
rows): the same request fails the same way, so it is reported as the
caller's to fix (InputRejectedError: INVALID_ARGUMENT / 400) with the
library's own words. Only running out of memory, which another moment might
not, stays an InferenceError (INTERNAL / 500).
"""

from __future__ import annotations

import pathlib
import re

from meshserve.errors import CorruptModelError, InferenceError, InputRejectedError

__all__ = [
    "MAX_LIBRARY_MESSAGE",
    "MAX_MESSAGE_CHARS",
    "library_message",
    "load_failed",
    "predict_failure",
]

MAX_MESSAGE_CHARS = 240
"""Characters of a library's load message kept: enough for what went wrong."""

MAX_LIBRARY_MESSAGE = 512
"""Characters of a library's predict message kept; some libraries print the
whole input, or pages of native context, in theirs."""

# xgboost's "[12:00:00] /src/common/json.cc:409: " prefix.
_LOG_PREFIX = re.compile(r"^\[\d{2}:\d{2}:\d{2}\]\s+\S+:\d+:\s*")
_BYTES_LITERAL = re.compile(r"""b(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_ESCAPED_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{5,}\b")


def library_message(error: BaseException, *, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``error``'s message as a caller may see it: its first line, before
    any stack trace, byte strings and addresses masked, at most ``limit``
    characters."""
    text = str(error).split("Stack trace:", 1)[0]
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = _LOG_PREFIX.sub("", line)
    line = _BYTES_LITERAL.sub("b'...'", line)
    line = _ESCAPED_BYTES.sub("...", line)
    line = _ADDRESS.sub("0x...", line)
    line = "".join(c if c.isprintable() else "?" for c in line)
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return line or type(error).__name__


def load_failed(library: str, path: pathlib.Path, error: BaseException) -> CorruptModelError:
    """The CorruptModelError for ``library`` failing to load ``path``."""
    return CorruptModelError(
        f"{library} model {path} could not be loaded: {library_message(error)}"
    )


def predict_failure(library: str, exc: Exception) -> InferenceError:
    """The error that reports ``exc``, raised by ``library`` while predicting."""
    text = library_message(exc, limit=MAX_LIBRARY_MESSAGE)
    if isinstance(exc, MemoryError):
        return InferenceError(f"{library} ran out of memory while predicting: {text}")
    return InputRejectedError(f"{library} refused the input: {text}")
