"""A long listing cut into messages that stay far below gRPC's message
limit (the admin API's Stream* calls)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

__all__ = ["MAX_CHUNK_BYTES", "MAX_CHUNK_ITEMS", "chunked"]

_T = TypeVar("_T")

# Part of the wire contract (meshserve_admin.proto), not a setting: a quarter
# of gRPC's default 4 MiB receive limit leaves room for the framing and for
# a client that kept the default, and 1,000 entries keep each message cheap
# to build and parse while still few at 100,000 entries.
MAX_CHUNK_BYTES = 1 << 20
MAX_CHUNK_ITEMS = 1000


def chunked(
    items: Sequence[_T],
    *,
    size_of: Callable[[_T], int],
    max_bytes: int = MAX_CHUNK_BYTES,
    max_items: int = MAX_CHUNK_ITEMS,
) -> Iterator[list[_T]]:
    """``items`` in order, in lists of at most ``max_items`` whose sizes add
    up to at most ``max_bytes`` (an item larger than that alone); nothing
    for no items."""
    chunk: list[_T] = []
    used = 0
    for item in items:
        size = size_of(item)
        if chunk and (len(chunk) >= max_items or used + size > max_bytes):
            yield chunk
            chunk, used = [], 0
        chunk.append(item)
        used += size
    if chunk:
        yield chunk
