"""bench/density.py's pure part: which step of offered load it reports."""

from __future__ import annotations

import pathlib
import sys
from typing import Any

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench"


def _step(concurrency: int, rps: float, p50: float, errors: int = 0) -> dict[str, Any]:
    return {"concurrency": concurrency, "throughput_rps": rps, "p50_ms": p50, "errors": errors}


def test_the_best_step_is_the_fastest_under_the_p50_goal_without_errors() -> None:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import density

    steps = [
        _step(1, 500, 1.4),
        _step(4, 900, 6.0, errors=1),  # fast, but a request failed
        _step(8, 850, 7.6),
        _step(16, 950, 15.0),  # fastest, p50 over the goal
    ]
    assert density.best_step(steps) == steps[2]
    assert density.best_step([_step(32, 1000, 12.0)]) is None
