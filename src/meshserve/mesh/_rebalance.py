"""Spreading load: a copy of a hot model on an idle instance.

ModelMesh adds copies of a model whose rate per copy passes a threshold;
that alone leaves instances that joined late (restarted, scaled out)
empty while one instance serves everything, until evictions force
placement. Here, in the same rate check, a busy instance also gives its
hottest model without a copy there to an underused instance: one that
serves well under this one's rate (``load_ratio``) and has room without
evicting anything. Per pass one copy per underused instance, at most one
per instance and model;
cold copies still go as any other (LRU eviction, scale-down when short of
space), so nothing flips back and forth.

A pure function over instance records, unit-tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from meshserve.mesh._placement import is_full, rank_instances
from meshserve.registry import InstanceRecord

__all__ = ["spread_targets"]


def spread_targets(
    *,
    own_rpm: int,
    hottest: Sequence[tuple[str, int]],
    others: Iterable[InstanceRecord],
    holders: Callable[[str], set[str]],
    label: Callable[[str], str | None],
    min_rpm: int,
    load_ratio: float,
    default_model_size: int,
) -> list[tuple[str, InstanceRecord]]:
    """The copies to add now, as (model, instance): at most one per
    underused instance, each a different model.

    ``own_rpm`` is this instance's request rate, ``hottest`` its loaded
    models with their rates (hottest first), ``others`` the other live
    instances; ``holders(model)`` the instances with a copy (loaded or
    loading), ``label(model)`` the label an instance needs to take it (None:
    not registered). Only models served at ``min_rpm`` or more qualify.
    """
    if own_rpm < min_rpm:
        return []
    idle = [
        r
        for r in others
        if not r.shutting_down
        and r.rpm * load_ratio < own_rpm
        and not is_full(r, default_model_size=default_model_size)
    ]
    hot = [m for m, rpm in hottest if rpm >= min_rpm and label(m) is not None]
    # Least busy first; among equals, placement's order (room, fewer models).
    ranked = sorted(
        rank_instances(idle, default_model_size=default_model_size), key=lambda r: r.rpm
    )
    chosen: list[tuple[str, InstanceRecord]] = []
    for record in ranked:
        taken = {m for m, _ in chosen}
        for model_id in hot:
            if (
                model_id not in taken
                and label(model_id) in record.labels
                and record.instance_id not in holders(model_id)
            ):
                chosen.append((model_id, record))
                break
    return chosen
