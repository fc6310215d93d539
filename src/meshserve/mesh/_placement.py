"""Where a model's first (or next) copy goes: ModelMesh's placement order.

Pure functions over instance records, so the order is unit-tested on its own:
not shutting down; not full before full; among full ones the one whose
first victim is worth least (GDSF's victim value; 0 everywhere with lru),
then the oldest LRU entry (its eviction hurts least); fewer models; more free space; older LRU;
more free loading slots; fewer loads in progress; more capacity; lower
request rate. Labels restrict where a model may go at all.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable

from meshserve.registry import InstanceRecord

__all__ = ["HOLDS_NO_MODELS", "choose_instance", "is_full", "rank_instances", "required_label"]

HOLDS_NO_MODELS = "meshserve:holds-no-models"
"""The label of a mesh member placement never chooses (the operator's: it
registers models, it does not serve them). No model requires it."""

# A full instance keeps this share of its capacity at most as its reserve.
_MAX_RESERVE_FRACTION = 0.05


def required_label(model_type: str) -> str:
    """The label an instance needs to take a model of ``model_type``:
    ``rt:<runtime>`` as it is; ``mt:<format>[:<version>][|pv:<protocol>]``
    and a bare format name as ``mt:<format>`` (an instance offers formats,
    not versions)."""
    label = model_type.split("|", 1)[0].strip()
    if label.startswith("rt:"):
        return label
    return "mt:" + label.removeprefix("mt:").split(":", 1)[0]


def is_full(record: InstanceRecord, *, default_model_size: int) -> bool:
    """Free space under the reserve: about one default-size model per
    loading slot, capped at 5% of capacity."""
    reserve = min(
        max(default_model_size, record.loading_slots * default_model_size),
        int(record.capacity_bytes * _MAX_RESERVE_FRACTION),
    )
    return record.free_bytes < reserve


def _key(record: InstanceRecord, *, default_model_size: int) -> tuple[object, ...]:
    full = is_full(record, default_model_size=default_model_size)
    # 0 means "nothing loaded": as old as it gets.
    lru = record.lru_oldest_ms
    return (
        record.shutting_down,
        full,
        record.victim_value if full else 0,
        lru if full else 0,
        record.model_count,
        -record.free_bytes,
        lru,
        -(record.loading_slots - record.loading_count),
        record.loading_count,
        -record.capacity_bytes,
        record.rpm,
    )


def rank_instances(
    records: Iterable[InstanceRecord], *, default_model_size: int
) -> list[InstanceRecord]:
    """``records`` best first."""
    return sorted(records, key=lambda r: _key(r, default_model_size=default_model_size))


def choose_instance(
    records: Iterable[InstanceRecord],
    *,
    label: str,
    exclude: Collection[str],
    default_model_size: int,
    prefer: str | None = None,
    rng: random.Random | None = None,
) -> InstanceRecord | None:
    """The best instance for a new copy, or None if no instance may take it.

    Among instances that rank equal, ``prefer`` (the caller itself: no hop)
    wins, then a random one, so that equal instances share new models.
    """
    eligible = [r for r in records if r.instance_id not in exclude and label in r.labels]
    if not eligible:
        return None
    ranked = rank_instances(eligible, default_model_size=default_model_size)
    best = _key(ranked[0], default_model_size=default_model_size)
    ties = [r for r in ranked if _key(r, default_model_size=default_model_size) == best]
    for record in ties:
        if record.instance_id == prefer:
            return record
    return (rng or random).choice(ties)
