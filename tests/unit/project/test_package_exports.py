"""The packages this layout split out (supervisor, the front ends, the store
factory) export what they list, sorted."""

from __future__ import annotations

import types

import pytest

from meshserve import server, store, supervisor


@pytest.mark.parametrize("package", [server, store, supervisor], ids=lambda p: p.__name__)
def test_exported_names_exist_and_are_sorted(package: types.ModuleType) -> None:
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert hasattr(package, name), name
