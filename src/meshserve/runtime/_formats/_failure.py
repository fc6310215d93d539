"""What a library's exception during predict means for the caller.

A model that loaded and then raises on a request raises because of that
request (a wrong feature count, NaN where the estimator takes none, zero
rows): the same request fails the same way, so it is reported as the
caller's to fix (InputRejectedError: INVALID_ARGUMENT / 400) with the
library's own words. Only running out of memory, which another moment might
not, stays an InferenceError (INTERNAL / 500).
"""

from __future__ import annotations

from meshserve.errors import InferenceError, InputRejectedError

__all__ = ["MAX_LIBRARY_MESSAGE", "predict_failure"]

MAX_LIBRARY_MESSAGE = 512
"""Characters of a library's message passed on; some libraries print the
whole input, or pages of native context, in theirs."""


def predict_failure(library: str, exc: Exception) -> InferenceError:
    """The error that reports ``exc``, raised by ``library`` while predicting."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > MAX_LIBRARY_MESSAGE:
        text = f"{text[:MAX_LIBRARY_MESSAGE]}... ({len(text)} characters)"
    if isinstance(exc, MemoryError):
        return InferenceError(f"{library} ran out of memory while predicting: {text}")
    return InputRejectedError(f"{library} refused the input: {text}")
