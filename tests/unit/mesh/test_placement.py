"""Placement follows ModelMesh's order, and labels restrict it."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from meshserve.mesh._placement import choose_instance, is_full, rank_instances, required_label
from meshserve.registry import InstanceRecord

MB = 1_000_000
LABELS = ("mt:sklearn", "rt:meshserve-builtin")


def record(name: str, **values: Any) -> InstanceRecord:
    base = InstanceRecord(
        instance_id=name, address=f"{name}:1", capacity_bytes=100 * MB, labels=LABELS
    )
    return dataclasses.replace(base, **values)


def order(*records: InstanceRecord) -> list[str]:
    return [r.instance_id for r in rank_instances(records, default_model_size=MB)]


def test_required_labels() -> None:
    assert required_label("sklearn") == "mt:sklearn"
    assert required_label("mt:onnx:1|pv:grpc-v2") == "mt:onnx"
    assert required_label("rt:mlserver-1.x") == "rt:mlserver-1.x"


def test_fullness_keeps_a_small_reserve() -> None:
    assert not is_full(record("a", used_bytes=50 * MB), default_model_size=MB)
    assert is_full(record("a", used_bytes=int(99.5 * MB)), default_model_size=MB)


def test_modelmesh_order() -> None:
    # Not shutting down before shutting down.
    assert order(record("a", shutting_down=True), record("b", used_bytes=90 * MB)) == ["b", "a"]
    # Not full before full; among full ones the oldest LRU entry first.
    full_new = record("f1", used_bytes=100 * MB, lru_oldest_ms=2_000, model_count=1)
    full_old = record("f2", used_bytes=100 * MB, lru_oldest_ms=1_000, model_count=9)
    roomy = record("r", used_bytes=50 * MB, model_count=50)
    assert order(full_new, full_old, roomy) == ["r", "f2", "f1"]
    # Then fewer models, then more free space, then older LRU.
    assert order(record("x", model_count=3), record("y", model_count=2)) == ["y", "x"]
    assert order(record("x", used_bytes=20 * MB), record("y", used_bytes=10 * MB)) == ["y", "x"]
    assert order(record("x", lru_oldest_ms=9), record("y", lru_oldest_ms=5)) == ["y", "x"]
    # Then free loading slots.
    busy = record("busy", loading_slots=1, loading_count=1)
    assert order(busy, record("idle")) == ["idle", "busy"]


def test_labels_exclusions_and_ties() -> None:
    onnx_only = record("o", labels=("mt:onnx",))
    sk = record("s", used_bytes=90 * MB)
    assert (
        choose_instance([onnx_only, sk], label="mt:sklearn", exclude=(), default_model_size=MB)
        == sk
    )
    assert choose_instance([sk], label="mt:sklearn", exclude={"s"}, default_model_size=MB) is None
    # Equal instances: the caller itself wins (no hop), else a random one.
    a, b = record("a"), record("b")
    chosen = choose_instance(
        [a, b], label="mt:sklearn", exclude=(), default_model_size=MB, prefer="b"
    )
    assert chosen == b
    picks = set()
    for seed in range(20):
        pick = choose_instance(
            [a, b], label="mt:sklearn", exclude=(), default_model_size=MB, rng=random.Random(seed)
        )
        assert pick is not None
        picks.add(pick.instance_id)
    assert picks == {"a", "b"}


def test_with_gdsf_the_full_instance_whose_first_victim_is_worth_least_goes_first() -> None:
    # f1's least recently used copy is the older, but its first GDSF victim
    # (a hot, small model) is worth more than f2's (a cold, big one).
    f1 = record("f1", used_bytes=100 * MB, lru_oldest_ms=1_000, victim_value=3.5)
    f2 = record("f2", used_bytes=100 * MB, lru_oldest_ms=2_000, victim_value=0.02)
    assert order(f1, f2) == ["f2", "f1"]
    # Not full still comes first, whatever the values.
    roomy = record("r", used_bytes=50 * MB, victim_value=9.0)
    assert order(f1, f2, roomy) == ["r", "f2", "f1"]


def test_with_lru_victim_values_are_zero_and_the_oldest_lru_entry_decides() -> None:
    f1 = record("f1", used_bytes=100 * MB, lru_oldest_ms=1_000)
    f2 = record("f2", used_bytes=100 * MB, lru_oldest_ms=2_000)
    assert order(f2, f1) == ["f1", "f2"]
