"""Adaptive batching: concurrent requests for one model share a runtime call.

Each model has a lane. A request that finds its lane idle is dispatched at
once, alone, by its own caller: batching adds no latency (not even a task
switch) to a request that has no company.
Requests that arrive while the lane's call runs queue, and the next
dispatch takes them together (up to ``max_batch_size``): "continuous"
batching, sized by the load itself rather than by a timer. A positive
``max_batch_delay_ms`` lets a dispatch that is not full wait that long for
more. One call per model runs at a time; different models run side by side.

What a dispatch does with its requests (merge what may be merged, run the
rest alone, retry a failed merged call one by one) is the injected
``execute``: :func:`meshserve.runtime._batch_run.run_batch` in a worker
thread for the built-in runtime; fakes in tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from meshserve._tasks import cancel_and_wait, start_supervised
from meshserve.errors import UnavailableError
from meshserve.protocol.inference import InferenceRequest, InferenceResponse
from meshserve.runtime._batch_limits import BatchLimits
from meshserve.runtime._batch_run import BatchRun, Item, Outcome

__all__ = ["Batcher", "Execute"]

log = logging.getLogger(__name__)


class Execute(Protocol):
    """Run one dispatch: ``items`` for ``model_id``, merged where allowed
    when ``merging``."""

    def __call__(
        self, model_id: str, items: list[Item], *, merging: bool
    ) -> Awaitable[BatchRun]: ...


@dataclass(slots=True)
class _Waiter:
    item: Item
    future: asyncio.Future[Outcome]


@dataclass(slots=True)
class _Lane:
    limits: BatchLimits
    queue: list[_Waiter] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    """The dispatches of what queued, while they run."""
    leader: asyncio.Task[object] | None = None
    """The caller running its own request, alone, found the lane idle."""


class Batcher:
    """Batches one runtime's requests per model (see the module docstring).

    ``limits_for`` gives a model's limits when its lane opens (a lane closes
    when it runs dry, so a reloaded model's new limits apply to its next
    burst). ``observe`` is told the model and size of every runtime call made.
    ``dispatches`` counts dispatches, for tests and the curious.
    """

    def __init__(
        self,
        *,
        execute: Execute,
        limits_for: Callable[[str], BatchLimits],
        observe: Callable[[str, int], None] | None = None,
    ) -> None:
        self._execute = execute
        self._limits_for = limits_for
        self._observe = observe
        self._lanes: dict[str, _Lane] = {}
        # Models that failed a merged call their requests passed one by one.
        self._unmergeable: set[str] = set()
        self._closed = False
        self.dispatches = 0

    def queued(self, model_id: str) -> int:
        """Requests for ``model_id`` waiting for a dispatch."""
        lane = self._lanes.get(model_id)
        return 0 if lane is None else len(lane.queue)

    def busy(self, model_id: str) -> bool:
        """Whether a dispatch for ``model_id`` is running."""
        lane = self._lanes.get(model_id)
        return lane is not None and (lane.task is not None or lane.leader is not None)

    async def infer_grpc(self, model_id: str, body: bytes) -> bytes:
        outcome = await self._submit(model_id, body)
        assert isinstance(outcome, bytes)
        return outcome

    async def infer(self, model_id: str, request: InferenceRequest) -> InferenceResponse:
        outcome = await self._submit(model_id, request)
        assert isinstance(outcome, InferenceResponse)
        return outcome

    async def _submit(self, model_id: str, item: Item) -> bytes | InferenceResponse:
        if self._closed:
            raise UnavailableError("the runtime is stopping")
        lane = self._lanes.get(model_id)
        if lane is None:
            lane = _Lane(self._limits_for(model_id))
            if not lane.limits.enabled:
                # Batching off for this model: straight through, no lane.
                return _result((await self._run(model_id, [item], merging=False))[0])
            self._lanes[model_id] = lane
            if lane.limits.max_batch_delay_ms <= 0:
                return await self._lead(model_id, lane, item)
        waiter = _Waiter(item, asyncio.get_running_loop().create_future())
        lane.queue.append(waiter)
        lane.arrived.set()
        if lane.task is None and lane.leader is None:
            self._start_drain(model_id, lane)
        return _result(await waiter.future)

    async def _lead(self, model_id: str, lane: _Lane, item: Item) -> bytes | InferenceResponse:
        """Run a request that found its lane idle at once, in the caller's
        own task (no task to start, nothing to wait for); what queues
        meanwhile is dispatched after it."""
        lane.leader = asyncio.current_task()
        try:
            outcomes = await self._run(model_id, [item], merging=model_id not in self._unmergeable)
        except asyncio.CancelledError:
            if self._closed:
                raise UnavailableError("the runtime is stopping") from None
            raise
        finally:
            lane.leader = None
            if lane.queue and not self._closed:
                self._start_drain(model_id, lane)
            else:
                _fail(lane.queue)
                if self._lanes.get(model_id) is lane:
                    del self._lanes[model_id]
        return _result(outcomes[0])

    def _start_drain(self, model_id: str, lane: _Lane) -> None:
        lane.task = start_supervised(self._drain(model_id, lane), name=f"batch:{model_id}")

    async def _run(self, model_id: str, items: list[Item], *, merging: bool) -> list[Outcome]:
        self.dispatches += 1
        run = await self._execute(model_id, items, merging=merging)
        if self._observe is not None:
            for size in run.calls:
                self._observe(model_id, size)
        if run.merge_failed and model_id not in self._unmergeable:
            self._unmergeable.add(model_id)
            log.warning(
                "model %s failed a merged batch its requests passed one by one: "
                "not merging its requests until it is loaded again (set its maxBatchSize to 1)",
                model_id,
            )
        return run.outcomes

    async def _drain(self, model_id: str, lane: _Lane) -> None:
        try:
            while lane.queue:
                await self._fill(lane)
                size = lane.limits.max_batch_size
                batch = [w for w in lane.queue[:size] if not w.future.done()]
                del lane.queue[:size]
                if not batch:
                    continue
                outcomes: list[Outcome]
                try:
                    outcomes = await self._run(
                        model_id,
                        [w.item for w in batch],
                        merging=model_id not in self._unmergeable,
                    )
                except Exception as exc:  # the executor itself failed
                    outcomes = [exc] * len(batch)
                except asyncio.CancelledError:
                    _fail(batch)
                    raise
                for waiter, outcome in zip(batch, outcomes, strict=True):
                    if not waiter.future.done():
                        waiter.future.set_result(outcome)
        finally:
            lane.task = None
            _fail(lane.queue)
            if self._lanes.get(model_id) is lane:
                del self._lanes[model_id]

    async def _fill(self, lane: _Lane) -> None:
        """Wait up to max_batch_delay_ms for a batch that is not full yet."""
        delay = lane.limits.max_batch_delay_ms
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay / 1000
        while len(lane.queue) < lane.limits.max_batch_size:
            left = deadline - loop.time()
            if left <= 0:
                return
            lane.arrived.clear()
            try:
                await asyncio.wait_for(lane.arrived.wait(), left)
            except TimeoutError:
                return

    def forget(self, model_id: str) -> None:
        """``model_id`` was unloaded: its next copy is tried merged again."""
        self._unmergeable.discard(model_id)

    async def close(self) -> None:
        """Fail what is queued and stop every lane."""
        self._closed = True
        for lane in list(self._lanes.values()):
            if lane.leader is not None:
                lane.leader.cancel()
            if lane.task is not None:
                await cancel_and_wait(lane.task)
        self._lanes.clear()


def _fail(waiters: list[_Waiter]) -> None:
    for waiter in waiters:
        if not waiter.future.done():
            waiter.future.set_result(UnavailableError("the runtime is stopping"))


def _result(outcome: Outcome) -> bytes | InferenceResponse:
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
