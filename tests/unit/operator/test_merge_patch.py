"""The merge patches the operator writes (RFC 7386)."""

from __future__ import annotations

from meshserve.operator._cluster import merge_patch


def test_changed_added_and_removed_keys() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "gone": [1], "same": "x"}
    new = {"a": 2, "b": {"c": 2}, "added": {"e": 1}, "same": "x"}
    assert merge_patch(old, new) == {"a": 2, "b": {"d": None}, "added": {"e": 1}, "gone": None}


def test_lists_are_replaced_whole() -> None:
    assert merge_patch({"l": [1, 2]}, {"l": [2]}) == {"l": [2]}
    assert merge_patch({"l": [1]}, {"l": [1]}) == {}
