"""Text on the wire: BYTES tensors and names quoted in messages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bytes_array", "quoted"]


def bytes_array(array: np.ndarray) -> np.ndarray:
    """An object array of ``bytes`` (UTF-8 for str, ``str()`` for the rest)."""
    encoded = np.empty(array.shape, dtype=object)
    for index, item in np.ndenumerate(array):
        encoded[index] = item if isinstance(item, bytes) else str(item).encode()
    return encoded


def quoted(names: Sequence[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)
