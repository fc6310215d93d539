"""The batcher's lanes: a lone request goes at once, what queues behind a
running call goes together, errors stay with their request."""

from __future__ import annotations

import asyncio

import pytest

from meshserve.errors import InputRejectedError, UnavailableError
from meshserve.runtime._batch_limits import BatchLimits
from meshserve.runtime._batch_run import BatchRun, Item, Outcome
from meshserve.runtime._batcher import Batcher


class GatedExecute:
    """An ``Execute`` that records each dispatch and holds it until the test
    opens its gate; answers ``b"ok:" + item``, or an error for b"bad"."""

    def __init__(self, *, merge_fails: bool = False) -> None:
        self.dispatched: list[tuple[list[Item], bool]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.merge_fails = merge_fails

    async def __call__(self, model_id: str, items: list[Item], *, merging: bool) -> BatchRun:
        self.dispatched.append((list(items), merging))
        await self.gate.wait()
        outcomes: list[Outcome] = [
            InputRejectedError("bad input") if item == b"bad" else b"ok:" + bytes(item)  # type: ignore[arg-type]
            for item in items
        ]
        calls = [len(items)] if merging else [1] * len(items)
        return BatchRun(outcomes=outcomes, calls=calls, merge_failed=self.merge_fails)


def batcher(
    execute: GatedExecute, limits: BatchLimits, observed: list[int] | None = None
) -> Batcher:
    return Batcher(
        execute=execute,
        limits_for=lambda model_id: limits,
        observe=None if observed is None else (lambda model_id, size: observed.append(size)),
    )


ON = BatchLimits(max_batch_size=4)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_request_is_dispatched_at_once() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, BatchLimits(max_batch_size=4, max_batch_delay_ms=0))
    call = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    # Dispatched alone while nothing else waited: no timer, no queue.
    assert execute.dispatched == [([b"a"], True)]
    assert lanes.dispatches == 1 and lanes.queued("m") == 0 and lanes.busy("m")
    execute.gate.set()
    assert await call == b"ok:a"
    await settle()
    assert not lanes.busy("m")


async def test_requests_queued_behind_a_call_go_together() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    observed: list[int] = []
    lanes = batcher(execute, ON, observed)
    first = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    rest = [asyncio.create_task(lanes.infer_grpc("m", x)) for x in (b"b", b"c", b"d")]
    await settle()
    assert lanes.queued("m") == 3 and lanes.dispatches == 1
    execute.gate.set()
    assert await first == b"ok:a"
    assert await asyncio.gather(*rest) == [b"ok:b", b"ok:c", b"ok:d"]
    assert [items for items, _ in execute.dispatched] == [[b"a"], [b"b", b"c", b"d"]]
    assert observed == [1, 3]


async def test_max_batch_size_caps_a_dispatch() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, BatchLimits(max_batch_size=2))
    calls = [asyncio.create_task(lanes.infer_grpc("m", bytes([65 + i]))) for i in range(5)]
    await settle()
    execute.gate.set()
    await asyncio.gather(*calls)
    # The first went alone at once; the four that queued behind it, two by two.
    assert [len(items) for items, _ in execute.dispatched] == [1, 2, 2]


async def test_models_have_lanes_of_their_own() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, ON)
    calls = [asyncio.create_task(lanes.infer_grpc(m, b"x")) for m in ("m1", "m2")]
    await settle()
    # Each model's lone request went at once, side by side.
    assert lanes.dispatches == 2
    execute.gate.set()
    await asyncio.gather(*calls)


async def test_an_error_stays_with_its_request() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, ON)
    first = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    good = asyncio.create_task(lanes.infer_grpc("m", b"b"))
    bad = asyncio.create_task(lanes.infer_grpc("m", b"bad"))
    await settle()
    execute.gate.set()
    await first
    assert await good == b"ok:b"
    with pytest.raises(InputRejectedError):
        await bad


async def test_batching_off_sends_each_request_alone_without_a_lane() -> None:
    execute = GatedExecute()
    lanes = batcher(execute, BatchLimits(max_batch_size=1))
    results = await asyncio.gather(*(lanes.infer_grpc("m", x) for x in (b"a", b"b")))
    assert results == [b"ok:a", b"ok:b"]
    assert execute.dispatched == [([b"a"], False), ([b"b"], False)]
    assert not lanes.busy("m")


async def test_a_model_that_fails_merged_batches_stops_merging_until_reloaded() -> None:
    execute = GatedExecute(merge_fails=True)
    lanes = batcher(execute, ON)
    await lanes.infer_grpc("m", b"a")
    await lanes.infer_grpc("m", b"b")
    assert [merging for _, merging in execute.dispatched] == [True, False]
    lanes.forget("m")
    await lanes.infer_grpc("m", b"c")
    assert execute.dispatched[-1][1] is True


async def test_a_delay_waits_for_a_fuller_batch_but_not_past_full() -> None:
    execute = GatedExecute()
    lanes = batcher(execute, BatchLimits(max_batch_size=2, max_batch_delay_ms=1000))
    first = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    assert lanes.dispatches == 0 and lanes.queued("m") == 1  # waiting for company
    second = asyncio.create_task(lanes.infer_grpc("m", b"b"))
    assert await asyncio.gather(first, second) == [b"ok:a", b"ok:b"]
    assert execute.dispatched == [([b"a", b"b"], True)]


async def test_a_cancelled_caller_is_skipped() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, ON)
    first = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    gone = asyncio.create_task(lanes.infer_grpc("m", b"gone"))
    kept = asyncio.create_task(lanes.infer_grpc("m", b"kept"))
    await settle()
    gone.cancel()
    await settle()
    execute.gate.set()
    await first
    assert await kept == b"ok:kept"
    assert execute.dispatched[-1][0] == [b"kept"]


async def test_close_fails_what_is_queued() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, ON)
    running = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    queued = asyncio.create_task(lanes.infer_grpc("m", b"b"))
    await settle()
    await lanes.close()
    for call in (running, queued):
        with pytest.raises(UnavailableError):
            await call
    with pytest.raises(UnavailableError):
        await lanes.infer_grpc("m", b"c")


async def test_a_cancelled_lone_caller_hands_what_queued_on() -> None:
    execute = GatedExecute()
    execute.gate.clear()
    lanes = batcher(execute, ON)
    alone = asyncio.create_task(lanes.infer_grpc("m", b"a"))
    await settle()
    queued = asyncio.create_task(lanes.infer_grpc("m", b"b"))
    await settle()
    alone.cancel()
    await settle()
    assert execute.dispatched[-1][0] == [b"b"]
    execute.gate.set()
    assert await queued == b"ok:b"
    await settle()
    assert not lanes.busy("m")
