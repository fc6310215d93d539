"""The hop deadline: how long a forward to another instance may take."""

from __future__ import annotations

import pytest

from meshserve.mesh._hop import hop_timeout
from meshserve.settings import MeshSettings

SETTINGS = MeshSettings(
    hop_deadline_fraction=0.3,
    hop_deadline_min_s=1.0,
    hop_deadline_max_s=30.0,
    hop_deadline_default_s=20.0,
    forward_timeout_s=120.0,
)


@pytest.mark.parametrize(
    ("remaining_s", "expected_s"),
    [
        (5.0, 1.5),  # a share of the client's time: a hung peer costs 1.5 of 5 s
        (2.0, 1.0),  # never below the minimum ...
        (0.4, 0.4),  # ... unless the client has less than that left
        (0.0, 0.0),
        (300.0, 30.0),  # never above the maximum
        (None, 20.0),  # no client deadline: the default
    ],
)
def test_a_forward_to_a_loaded_copy_gets_a_bounded_share_of_the_clients_time(
    remaining_s: float | None, expected_s: float
) -> None:
    assert hop_timeout(remaining_s, loading=False, settings=SETTINGS) == pytest.approx(expected_s)


@pytest.mark.parametrize(
    ("remaining_s", "expected_s"),
    [(5.0, 5.0), (300.0, 120.0), (None, 120.0)],
)
def test_a_forward_that_loads_first_may_take_what_the_client_allows(
    remaining_s: float | None, expected_s: float
) -> None:
    assert hop_timeout(remaining_s, loading=True, settings=SETTINGS) == expected_s
