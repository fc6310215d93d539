"""Reading an instance's Prometheus metrics: the ModelMesh counters the
mesh benchmark needs, from the text exposition format.

``parse_exposition`` turns exposition text into samples; ``CacheCounters``
sums the counters that tell hits from misses over every label set, so
``after - before`` is what one run did on one instance. No client library:
the format's sample lines are simple enough to read here, and this keeps the
benchmark free of a dependency meshserve itself may not have.
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, fields

__all__ = [
    "CACHE_MISS",
    "EVICTIONS",
    "LOADS",
    "CacheCounters",
    "Sample",
    "missing_counters",
    "parse_exposition",
    "scrape",
    "totals",
]

CACHE_MISS = "modelmesh_cache_miss_milliseconds_count"
"""Requests that had to wait for a load (ModelMesh's cache-miss histogram)."""
LOADS = "modelmesh_loadmodel_milliseconds_count"
EVICTIONS = "modelmesh_age_at_eviction_milliseconds_count"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def parse_exposition(text: str) -> list[Sample]:
    """Every sample line of Prometheus text exposition ``text``.

    Comments (``# HELP``, ``# TYPE``) and blank lines are skipped; label
    values are unescaped; a trailing timestamp is ignored. A line that does
    not parse raises ValueError naming it: a silently skipped counter would
    read as zero misses.
    """
    samples = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(_parse_line(line))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}: {raw!r}") from None
    return samples


def _parse_line(line: str) -> Sample:
    match = _NAME.match(line)
    if match is None:
        raise ValueError("no metric name")
    name, rest = match.group(0), line[match.end() :]
    labels: list[tuple[str, str]] = []
    if rest.startswith("{"):
        position = 1
        if rest[1:].lstrip().startswith("}"):
            position = rest.index("}") + 1
        else:
            while True:
                label = _LABEL.match(rest, position)
                if label is None:
                    raise ValueError("malformed labels")
                labels.append((label.group(1), _unescape(label.group(2))))
                position = label.end()
                if label.group(3) == "}":
                    break
                # A trailing comma before the brace is allowed.
                stripped = rest[position:].lstrip()
                if stripped.startswith("}"):
                    position = len(rest) - len(stripped) + 1
                    break
        rest = rest[position:]
    parts = rest.split()
    if not parts or len(parts) > 2:
        raise ValueError("expected a value and at most a timestamp")
    return Sample(name=name, labels=tuple(labels), value=_value(parts[0]))


def _unescape(text: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], text)


def _value(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    return float(text)


def totals(samples: Iterable[Sample]) -> dict[str, float]:
    """Each metric name's value summed over its label sets."""
    summed: dict[str, float] = {}
    for sample in samples:
        summed[sample.name] = summed.get(sample.name, 0.0) + sample.value
    return summed


@dataclass(frozen=True, slots=True)
class CacheCounters:
    """Cumulative cache counters of one instance (or a sum of instances)."""

    misses: float = 0.0
    """Requests that waited for a load."""
    loads: float = 0.0
    evictions: float = 0.0

    @classmethod
    def from_totals(cls, summed: dict[str, float]) -> CacheCounters:
        return cls(
            misses=summed.get(CACHE_MISS, 0.0),
            loads=summed.get(LOADS, 0.0),
            evictions=summed.get(EVICTIONS, 0.0),
        )

    def __add__(self, other: CacheCounters) -> CacheCounters:
        return CacheCounters(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def __sub__(self, other: CacheCounters) -> CacheCounters:
        return CacheCounters(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}
        )


def missing_counters(summed: dict[str, float]) -> list[str]:
    """The counters ``CacheCounters`` reads that ``summed`` lacks.

    A histogram with no observation yet may be absent, so this is a warning,
    not an error: an instance that never missed exposes no miss count.
    """
    return [name for name in (CACHE_MISS, LOADS, EVICTIONS) if name not in summed]


def scrape(url: str, *, timeout_s: float = 10.0) -> dict[str, float]:
    """GET ``url`` (a /metrics endpoint) and return its totals per metric name."""
    with urllib.request.urlopen(url, timeout=timeout_s) as reply:
        text = reply.read().decode("utf-8", errors="replace")
    return totals(parse_exposition(text))
