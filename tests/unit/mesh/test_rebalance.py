"""Load spreading: a busy instance's hottest models go to underused ones."""

from __future__ import annotations

import dataclasses
from typing import Any

from meshserve.mesh._rebalance import spread_targets
from meshserve.registry import InstanceRecord

MB = 1_000_000
LABELS = ("mt:sklearn",)


def record(name: str, **values: Any) -> InstanceRecord:
    base = InstanceRecord(
        instance_id=name, address=f"{name}:1", capacity_bytes=100 * MB, labels=LABELS
    )
    return dataclasses.replace(base, **values)


def targets(
    *,
    own_rpm: int = 1200,
    hottest: list[tuple[str, int]] | None = None,
    others: list[InstanceRecord],
    held: dict[str, set[str]] | None = None,
    min_rpm: int = 300,
) -> list[tuple[str, str]]:
    chosen = spread_targets(
        own_rpm=own_rpm,
        hottest=hottest if hottest is not None else [("hot", 800), ("warm", 400)],
        others=others,
        holders=lambda m: (held or {}).get(m, {"self"}),
        label=lambda m: None if m == "gone" else "mt:sklearn",
        min_rpm=min_rpm,
        load_ratio=2.0,
        default_model_size=MB,
    )
    return [(model_id, r.instance_id) for model_id, r in chosen]


def test_the_hottest_model_goes_to_the_idlest_instance() -> None:
    others = [record("busy", rpm=1000), record("idle", rpm=0)]
    assert targets(others=others) == [("hot", "idle")]


def test_each_underused_instance_takes_a_different_model_per_pass() -> None:
    others = [record("calm", rpm=300), record("idle", rpm=0), record("busy", rpm=1000)]
    assert targets(others=others) == [("hot", "idle"), ("warm", "calm")]
    # One hot model: one copy this pass, the next instance gets it next pass.
    assert targets(hottest=[("hot", 800)], others=others) == [("hot", "idle")]


def test_a_model_already_there_is_skipped_for_the_next() -> None:
    held = {"hot": {"self", "idle"}, "warm": {"self"}}
    assert targets(others=[record("idle")], held=held) == [("warm", "idle")]
    held = {"hot": {"self", "idle"}, "warm": {"self", "idle"}}
    assert targets(others=[record("idle")], held=held) == []


def test_nothing_moves_without_a_real_gap_or_real_load() -> None:
    # Similarly loaded: no trading of copies.
    assert targets(others=[record("peer", rpm=700)]) == []
    # This instance is not busy.
    assert targets(own_rpm=200, hottest=[("hot", 200)], others=[record("idle")]) == []
    # Its models are all cold.
    assert targets(hottest=[("cold", 100)], others=[record("idle")]) == []


def test_full_draining_or_unlabelled_instances_take_nothing() -> None:
    full = record("full", used_bytes=int(99.9 * MB))
    leaving = record("leaving", shutting_down=True)
    other_runtime = record("other", labels=("mt:onnx",))
    assert targets(others=[full, leaving, other_runtime]) == []


def test_an_unregistered_model_is_skipped() -> None:
    assert targets(hottest=[("gone", 900), ("hot", 800)], others=[record("idle")]) == [
        ("hot", "idle")
    ]
