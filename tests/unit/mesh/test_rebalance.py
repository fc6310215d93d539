"""Load spreading: a busy instance's hottest model goes to an underused one."""

from __future__ import annotations

import dataclasses
from typing import Any

from meshserve.mesh._rebalance import spread_target
from meshserve.registry import InstanceRecord

MB = 1_000_000
LABELS = ("mt:sklearn",)


def record(name: str, **values: Any) -> InstanceRecord:
    base = InstanceRecord(
        instance_id=name, address=f"{name}:1", capacity_bytes=100 * MB, labels=LABELS
    )
    return dataclasses.replace(base, **values)


def target(
    *,
    own_rpm: int = 1200,
    hottest: list[tuple[str, int]] | None = None,
    others: list[InstanceRecord],
    held: dict[str, set[str]] | None = None,
    min_rpm: int = 300,
) -> tuple[str, str] | None:
    choice = spread_target(
        own_rpm=own_rpm,
        hottest=hottest if hottest is not None else [("hot", 800), ("warm", 400)],
        others=others,
        holders=lambda m: (held or {}).get(m, {"self"}),
        label=lambda m: None if m == "gone" else "mt:sklearn",
        min_rpm=min_rpm,
        load_ratio=2.0,
        default_model_size=MB,
    )
    return None if choice is None else (choice[0], choice[1].instance_id)


def test_the_hottest_model_goes_to_the_idlest_instance() -> None:
    others = [record("busy", rpm=1000), record("idle", rpm=0), record("calm", rpm=300)]
    assert target(others=others) == ("hot", "idle")


def test_a_model_already_there_is_skipped_for_the_next() -> None:
    held = {"hot": {"self", "idle"}, "warm": {"self"}}
    assert target(others=[record("idle")], held=held) == ("warm", "idle")
    # Another underused instance without it comes before a cooler model.
    assert target(others=[record("idle"), record("calm", rpm=100)], held=held) == (
        "hot",
        "calm",
    )


def test_nothing_moves_without_a_real_gap_or_real_load() -> None:
    # Similarly loaded: no trading of copies.
    assert target(others=[record("peer", rpm=700)]) is None
    # This instance is not busy.
    assert target(own_rpm=200, hottest=[("hot", 200)], others=[record("idle")]) is None
    # Its models are all cold.
    assert target(hottest=[("cold", 100)], others=[record("idle")]) is None


def test_full_draining_or_unlabelled_instances_take_nothing() -> None:
    full = record("full", used_bytes=int(99.9 * MB))
    leaving = record("leaving", shutting_down=True)
    other_runtime = record("other", labels=("mt:onnx",))
    assert target(others=[full, leaving, other_runtime]) is None


def test_an_unregistered_model_is_skipped() -> None:
    assert target(hottest=[("gone", 900), ("hot", 800)], others=[record("idle")]) == (
        "hot",
        "idle",
    )
