"""A byte budget shared by the inference requests an instance holds at once.

Decoding a request takes memory in proportion to its body (a JSON body of
BYTES several times its size), and bodies arrive concurrently: without a
bound, a handful of large requests takes the instance's memory and its event
loop. Each request takes a :class:`Reservation` for as long as it holds its
body and what it decoded, grown as the body's size becomes known (at once
from a Content-Length, chunk by chunk otherwise); a growth that would take
the budget over its limit is refused with ``ServerBusyError`` (429 /
RESOURCE_EXHAUSTED), unless the request is the only one holding bytes, so
that one request of any allowed size can always be served.

The budget is used from the event loop only, so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable

from meshserve.errors import ServerBusyError

__all__ = ["DecodeBudget", "Reservation"]

_RETRY_AFTER_S = 1.0
"""What a refused client is told to wait: requests holding the budget
usually finish within a second."""


class DecodeBudget:
    """At most ``limit_bytes`` bytes reserved at once (0: unlimited)."""

    def __init__(self, *, limit_bytes: int, on_refused: Callable[[], None] | None = None) -> None:
        """``on_refused`` is called for each refusal (the metric)."""
        self._limit = limit_bytes
        self._on_refused = on_refused
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Bytes reserved now."""
        return self._in_use

    def reservation(self) -> Reservation:
        """A reservation of 0 bytes, grown by the caller; what it holds is
        given back when the ``with`` block it is used in ends."""
        return Reservation(self)

    def _grow(self, held: Reservation, size: int) -> None:
        others = self._in_use - held.size
        if self._limit and others and self._in_use + size > self._limit:
            if self._on_refused is not None:
                self._on_refused()
            raise ServerBusyError(
                f"the server is busy: it holds {others} bytes of other requests and this "
                f"one needs {held.size + size}; the limit is {self._limit} bytes "
                f"(server.maxInflightDecodeBytes); retry shortly",
                retry_after_s=_RETRY_AFTER_S,
            )
        self._in_use += size

    def _release(self, size: int) -> None:
        self._in_use -= size


class Reservation:
    """The bytes one request holds of a :class:`DecodeBudget`, until the
    ``with`` block it is used in ends."""

    def __init__(self, budget: DecodeBudget) -> None:
        self._budget = budget
        self.size = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._budget._release(self.size)
        self.size = 0

    def grow(self, size: int) -> None:
        """Hold ``size`` more bytes, or raise ServerBusyError (holding no
        more than before)."""
        self._budget._grow(self, size)
        self.size += size
