"""Request rate limits per caller: a token bucket for each.

Framework-free, like the rest of ``meshserve.security``: the gRPC
interceptor and REST middleware in ``meshserve.server`` name the caller (a
principal, or a client address when auth is off) and call
:meth:`RateLimiter.check`, whose :class:`~meshserve.errors.RateLimitedError`
becomes RESOURCE_EXHAUSTED / 429 with ``Retry-After`` at the edge.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; a
request takes one, or is refused when none is left. So a caller idle for a
while may send ``burst`` requests at once, and ``rate`` a second after that.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable

from meshserve.errors import RateLimitedError
from meshserve.settings import LimitsSettings

__all__ = ["RateLimiter", "TokenBucket", "rate_limiter"]

MAX_CALLERS = 10_000
"""Buckets kept at once. Beyond, the least recently seen caller's bucket is
dropped: a caller forgotten that way starts again with a full bucket, which
only ever errs on the lenient side, and memory stays bounded however many
addresses a client spreads its requests over."""


@dataclasses.dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``; starts full."""

    rate: float
    burst: float
    tokens: float
    updated: float
    """Clock reading when ``tokens`` was last brought up to date."""

    @classmethod
    def full(cls, *, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def take(self, now: float) -> float:
        """Take a token: 0.0 when one was there, otherwise the seconds until
        one will be (nothing is taken then)."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One token bucket per caller key, all with the same rate and burst."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int = 0,
        clock: Callable[[], float] = time.monotonic,
        on_limited: Callable[[], None] | None = None,
        max_callers: int = MAX_CALLERS,
    ) -> None:
        """``rate`` is requests per second (> 0); ``burst`` 0 means one
        second's worth, at least one request. ``on_limited`` is told of each
        refusal (to count it)."""
        if rate <= 0:
            raise ValueError("a rate limit needs a rate above 0 (0 means no limiter at all)")
        self.rate = rate
        self.burst = burst or max(1, math.ceil(rate))
        self._clock = clock
        self._on_limited = on_limited
        self._max_callers = max_callers
        self._buckets: collections.OrderedDict[str, TokenBucket] = collections.OrderedDict()

    def check(self, key: str, *, caller: str) -> None:
        """Count one request of the caller ``key``; raise RateLimitedError if
        its bucket is empty. ``caller`` names it in the message (``principal
        'ci'``, ``client 10.0.0.7``)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket.full(rate=self.rate, burst=self.burst, now=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_callers:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait_s = bucket.take(now)
        if wait_s <= 0:
            return
        if self._on_limited is not None:
            self._on_limited()
        raise RateLimitedError(
            f"rate limit exceeded for {caller}: limits.requestsPerSecond is {self.rate:g} "
            f"requests/s (burst {self.burst}); retry in {wait_s:.2f} s",
            retry_after_s=wait_s,
        )


def rate_limiter(
    settings: LimitsSettings,
    *,
    on_limited: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimiter | None:
    """The limiter ``settings`` ask for, or None when requests are unlimited."""
    if settings.requests_per_second <= 0:
        return None
    return RateLimiter(
        rate=settings.requests_per_second,
        burst=settings.request_burst,
        clock=clock,
        on_limited=on_limited,
    )
