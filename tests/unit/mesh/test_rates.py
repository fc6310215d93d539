"""RateTracker: per-model and total rates over a sliding window, and that
expiry forgets the models whose requests left the window."""

from __future__ import annotations

from meshserve._clock import ManualClock
from meshserve.mesh._rates import RateTracker


def _tracker(window_s: float = 60.0) -> tuple[RateTracker, ManualClock]:
    clock = ManualClock()
    return RateTracker(clock=clock, window_s=window_s), clock


def test_total_is_the_sum_of_the_models_rates() -> None:
    rates, clock = _tracker()
    for index in range(300):
        rates.count(f"m{index % 30}")
        clock.advance(0.1)
    assert rates.total_rpm() == 300
    assert rates.total_rpm() == sum(rates.rpm(f"m{i}") for i in range(30))
    assert rates.rpm("m0") == 10


def test_total_scales_to_a_minute() -> None:
    rates, _ = _tracker(window_s=30.0)
    for _ in range(7):
        rates.count("a")
    rates.count("b")
    assert rates.rpm("a") == 14
    assert rates.total_rpm() == 16


def test_requests_leave_the_window_for_model_and_total() -> None:
    rates, clock = _tracker()
    rates.count("old")
    clock.advance(30)
    rates.count("new")
    assert (rates.rpm("old"), rates.rpm("new"), rates.total_rpm()) == (1, 1, 2)
    clock.advance(35)  # "old" is 65 s back, "new" 35 s
    assert (rates.rpm("old"), rates.rpm("new"), rates.total_rpm()) == (0, 1, 1)
    clock.advance(60)
    assert (rates.rpm("new"), rates.total_rpm()) == (0, 0)


def test_expiry_forgets_models_without_being_asked_about_them() -> None:
    """A model never asked about again (evicted, unregistered) must not be
    held forever: counting in a later bucket drops it."""
    rates, clock = _tracker()
    for index in range(1000):
        rates.count(f"m{index}")
    assert rates.tracked() == 1000
    clock.advance(120)
    rates.count("later")
    assert rates.tracked() == 1
