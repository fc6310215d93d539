"""``meshserve status``'s tables, from a snapshot (the command itself runs
against a real instance in tests/integration/test_up_status.py)."""

from __future__ import annotations

from meshserve.cli._status import render_snapshot
from meshserve.protocol.status_snapshot import (
    FailureRow,
    InstanceRow,
    LoadRow,
    ModelRow,
    StatusSnapshot,
)

NOW_MS = 1_700_000_000_000

SNAPSHOT = StatusSnapshot(
    served_by="i-1",
    time_ms=NOW_MS,
    refresh_s=5.0,
    instances=(
        InstanceRow(
            instance_id="i-1",
            capacity_bytes=4 * 1024**3,
            used_bytes=3 * 1024**3,
            model_count=7,
            lru_oldest_ms=NOW_MS - 120_000,
            rpm=60,
            loading_count=1,
            loading_slots=2,
            shutting_down=False,
            version="0.1.0",
            here=True,
        ),
    ),
    models=(
        ModelRow(
            model_id="fraud",
            type="onnx",
            copies=("i-1", "i-2"),
            loading_on=("i-3",),
            size_bytes=1536,
            last_used_ms=NOW_MS - 42_000,
            rpm_here=12,
        ),
    ),
    models_total=9,
    loads=(LoadRow(model_id="fraud", instance_id="i-3", since_ms=NOW_MS - 3_000),),
    failures=(
        FailureRow(
            model_id="broken",
            instance_id="i-1",
            time_ms=NOW_MS - 300_000,
            reason="file is not a zip file",
            error_type="CorruptModelError",
        ),
    ),
    services=(),
)


def _section(text: str, title: str) -> list[str]:
    block = next(b for b in text.split("\n\n") if b.startswith(title))
    return block.splitlines()


def test_every_section_is_a_table_titled_with_its_count() -> None:
    text = render_snapshot(SNAPSHOT)
    instances = _section(text, "INSTANCES")
    assert instances[0] == "INSTANCES (1, from i-1)"
    assert instances[2].split() == [
        "i-1", "*", "3.0GiB", "4.0GiB", "[########--]", "75%", "7", "2m", "60", "1/2",
    ]  # fmt: skip
    models = _section(text, "HOTTEST MODELS")
    assert models[0] == "HOTTEST MODELS (1 of 9)"
    assert models[2].split() == [
        "fraud",
        "onnx",
        "2",
        "i-1,i-2,i-3(loading)",
        "1.5KiB",
        "42s",
        "12",
    ]
    assert _section(text, "LOADS IN FLIGHT")[2].split() == ["fraud", "i-3", "3s"]
    failure = _section(text, "RECENT FAILURES")[2]
    assert failure.split(maxsplit=3) == [
        "broken",
        "i-1",
        "5m",
        "CorruptModelError: file is not a zip file",
    ]
    assert _section(text, "INFERENCESERVICES") == [
        "INFERENCESERVICES (0)",
        "  (no InferenceServices)",
    ]
