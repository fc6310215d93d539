"""No hand-written module in src/meshserve is over 500 lines: a module that
long holds more than one idea (STYLE.md: small modules, one concept each)."""

from __future__ import annotations

import pathlib

SRC = pathlib.Path(__file__).resolve().parents[3] / "src" / "meshserve"
MAX_LINES = 500
GENERATED = SRC / "protocol" / "_pb"
"""protoc's output, not written by hand."""


def _line_count(path: pathlib.Path) -> int:
    with path.open("rb") as file:
        return sum(1 for _ in file)


def test_no_hand_written_module_is_over_500_lines() -> None:
    modules = [path for path in SRC.rglob("*.py") if not path.is_relative_to(GENERATED)]
    assert len(modules) > 50, f"found only {len(modules)} modules under {SRC}"
    offenders = {
        str(path.relative_to(SRC.parent)): lines
        for path in sorted(modules)
        if (lines := _line_count(path)) > MAX_LINES
    }
    listed = ", ".join(f"{name} ({lines})" for name, lines in offenders.items())
    assert not offenders, f"over {MAX_LINES} lines (split them by concern): {listed}"
