"""Checking that a UBJSON file is whole before XGBoost reads it.

XGBoost (3.x) trusts the lengths in a UBJSON model: a truncated ``.ubj``
file can make it read past the end of its buffer and kill the process with
a segmentation fault instead of raising. This walks the document's
structure, skipping the payloads of typed arrays (where nearly all of the
bytes are), and checks every length against the file's end. The file is
memory-mapped, so the walk touches only the pages holding markers.
"""

from __future__ import annotations

import mmap
import pathlib

__all__ = ["UBJSONError", "check_ubjson"]


class UBJSONError(ValueError):
    """The file is not one complete UBJSON value."""


_FIXED = {
    ord("Z"): 0,
    ord("N"): 0,
    ord("T"): 0,
    ord("F"): 0,
    ord("i"): 1,
    ord("U"): 1,
    ord("C"): 1,
    ord("I"): 2,
    ord("l"): 4,
    ord("d"): 4,
    ord("L"): 8,
    ord("D"): 8,
}
_INTEGERS = {ord("i"): 1, ord("U"): 1, ord("I"): 2, ord("l"): 4, ord("L"): 8}
_MAX_DEPTH = 256


def check_ubjson(path: pathlib.Path) -> None:
    """Raise ``UBJSONError`` unless ``path`` holds exactly one whole value."""
    with path.open("rb") as f:
        if path.stat().st_size == 0:
            raise UBJSONError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            reader = _Reader(data)
            reader.value(reader.byte(), depth=0)
            if reader.pos != len(data):
                raise UBJSONError(f"{len(data) - reader.pos} stray bytes after the document")


class _Reader:
    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        self.pos = 0

    def skip(self, count: int) -> None:
        if count < 0 or self.pos + count > len(self.data):
            raise UBJSONError(
                f"truncated: {count} bytes needed at offset {self.pos}, "
                f"the file has {len(self.data)}"
            )
        self.pos += count

    def byte(self) -> int:
        start = self.pos
        self.skip(1)
        return self.data[start]

    def peek(self) -> int:
        if self.pos >= len(self.data):
            raise UBJSONError(f"truncated at offset {self.pos}")
        return self.data[self.pos]

    def integer(self) -> int:
        marker = self.byte()
        size = _INTEGERS.get(marker)
        if size is None:
            raise UBJSONError(f"expected a length at offset {self.pos - 1}, got {chr(marker)!r}")
        start = self.pos
        self.skip(size)
        return int.from_bytes(self.data[start : self.pos], "big", signed=marker != ord("U"))

    def value(self, marker: int, *, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise UBJSONError("nested too deeply")
        if marker in _FIXED:
            self.skip(_FIXED[marker])
        elif marker in (ord("S"), ord("H")):
            self.skip(self.integer())
        elif marker == ord("["):
            self.container(keyed=False, end=ord("]"), depth=depth + 1)
        elif marker == ord("{"):
            self.container(keyed=True, end=ord("}"), depth=depth + 1)
        else:
            raise UBJSONError(f"unknown marker {chr(marker)!r} at offset {self.pos - 1}")

    def container(self, *, keyed: bool, end: int, depth: int) -> None:
        item_type: int | None = None
        if self.peek() == ord("$"):
            self.skip(1)
            item_type = self.byte()
            if self.peek() != ord("#"):
                raise UBJSONError(f"a typed container without a count at offset {self.pos}")
        if self.peek() == ord("#"):
            self.skip(1)
            count = self.integer()
            if not keyed and item_type in _FIXED:
                self.skip(count * _FIXED[item_type])  # a typed array: no markers inside
                return
            for _ in range(count):
                if keyed:
                    self.skip(self.integer())
                self.value(item_type if item_type is not None else self.byte(), depth=depth)
            return
        while self.peek() != end:
            if keyed:
                self.skip(self.integer())
            self.value(self.byte(), depth=depth)
        self.skip(1)
