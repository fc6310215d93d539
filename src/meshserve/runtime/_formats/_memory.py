"""Handing memory freed during a load back to the operating system.

Loading parses the file into temporaries (a JSON tree, arrays read out of
a zip, a copy of the model text) that the library frees once its own
structures are built. glibc's malloc keeps most of that freed memory in
the process (raising its mmap threshold after large frees), so without a
trim the RSS growth of a load was 2-6 times (21 for a small LightGBM model)
what remains after trimming, and measured the parser rather than the model
(see docs/model-formats.md). ``malloc_trim(0)`` returns the free pages; it
costs 1-30 ms after a few-MiB load.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["release_free_heap"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


def release_free_heap() -> None:
    """Return free heap pages to the OS where the C library can (glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
