"""Events (meshserve._events): listeners subscribed after the emitter was
built are called in order, and one failing does not silence the others."""

from __future__ import annotations

import logging

import pytest

from meshserve._events import AsyncEvent, Event


def test_an_event_calls_its_listeners_in_order_with_the_value() -> None:
    event: Event[int] = Event("progress")
    seen: list[tuple[str, int]] = []
    event.emit(0)  # nobody listens yet: nothing happens
    event.subscribe(lambda value: seen.append(("first", value)))
    event.subscribe(lambda value: seen.append(("second", value)))
    event.emit(7)
    assert seen == [("first", 7), ("second", 7)]


def test_a_failing_listener_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event: Event[str] = Event("progress")
    seen: list[str] = []

    def broken(value: str) -> None:
        raise RuntimeError(f"cannot take {value}")

    event.subscribe(broken)
    event.subscribe(seen.append)
    with caplog.at_level(logging.ERROR, logger="meshserve.events"):
        event.emit("x")
    assert seen == ["x"]
    [record] = caplog.records
    assert "progress" in record.getMessage()
    assert record.exc_info is not None


async def test_an_async_event_awaits_each_listener_in_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    event = AsyncEvent("runtime restarted")
    seen: list[str] = []

    async def first() -> None:
        seen.append("first")

    async def broken() -> None:
        raise RuntimeError("reload failed")

    async def last() -> None:
        seen.append("last")

    await event.emit()  # nobody listens yet
    for listener in (first, broken, last):
        event.subscribe(listener)
    with caplog.at_level(logging.ERROR, logger="meshserve.events"):
        await event.emit()
    assert seen == ["first", "last"]
    assert ["runtime restarted" in r.getMessage() for r in caplog.records] == [True]
