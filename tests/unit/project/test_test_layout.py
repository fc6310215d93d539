"""The unit tests mirror the package layout: tests/unit/<package>/ for each
package of meshserve, plus core/ (its top-level modules) and project/
(checks over the whole tree)."""

from __future__ import annotations

import pathlib

UNIT = pathlib.Path(__file__).resolve().parents[1]
SRC = UNIT.parents[1] / "src" / "meshserve"
OWN = {"core", "project", "data", "__pycache__"}


def test_every_test_directory_is_named_for_a_package() -> None:
    packages = {p.parent.name for p in SRC.glob("*/__init__.py")}
    directories = {p.name for p in UNIT.iterdir() if p.is_dir()} - OWN
    assert directories <= packages, sorted(directories - packages)
    assert not sorted(UNIT.glob("test_*.py")), "unit tests live in their package's directory"
