"""The queues between the request path and the processors.

:meth:`PayloadProcessors.offer` never waits: each processor has a bounded
queue drained by its own task, and a payload that finds it full is dropped
and counted (``reason="queue_full"``); one the processor fails on (an
endpoint down, slow past ``payloads.timeoutS``, or answering an error) is
counted too (``reason="failed"``) and logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from meshserve._lifecycle import Service
from meshserve._log_limit import LimitedLog
from meshserve._tasks import cancel_and_wait, start_supervised
from meshserve.metrics import MetricsRecorder
from meshserve.payloads._payload import Payload
from meshserve.payloads._processors import LoggerProcessor, Processor, RemoteProcessor
from meshserve.settings import ProcessorSpec

__all__ = ["NO_PAYLOADS", "PayloadProcessors", "PayloadSink"]

log = logging.getLogger(__name__)


class PayloadSink(Protocol):
    """Where the router offers payloads."""

    def wants(self, model_id: str, vmodel_id: str | None, method: str) -> bool:
        """Whether any processor takes this inference's payloads (asked
        first, so that none is built for nobody)."""
        ...

    def offer(self, payload: Payload) -> None:
        """Hand a payload over; returns at once."""
        ...


class _NoPayloads:
    def wants(self, model_id: str, vmodel_id: str | None, method: str) -> bool:
        return False

    def offer(self, payload: Payload) -> None:
        pass


NO_PAYLOADS: PayloadSink = _NoPayloads()
"""No processors configured."""


@dataclass(slots=True)
class _Lane:
    spec: ProcessorSpec
    processor: Processor
    queue: asyncio.Queue[Payload]
    task: asyncio.Task[None] | None = field(default=None)


class PayloadProcessors(Service):
    """The processors of ``payloads.processors``, each behind its queue."""

    def __init__(
        self,
        *,
        specs: tuple[ProcessorSpec, ...],
        queue_size: int,
        timeout_s: float,
        source: str,
        metrics: MetricsRecorder,
    ) -> None:
        """``source``: the CloudEvents ``ce-source`` remote processors send
        (this instance)."""
        self._specs = specs
        self._queue_size = queue_size
        self._timeout_s = timeout_s
        self._source = source
        self._metrics = metrics
        self._lanes: list[_Lane] = []
        self._failures = LimitedLog(log)

    async def start(self) -> None:
        for spec in self._specs:
            processor: Processor = (
                LoggerProcessor()
                if spec.scheme == "logger"
                else RemoteProcessor(url=spec.url, timeout_s=self._timeout_s, source=self._source)
            )
            lane = _Lane(spec=spec, processor=processor, queue=asyncio.Queue(self._queue_size))
            lane.task = start_supervised(self._drain(lane), name=f"payloads:{spec.scheme}")
            self._lanes.append(lane)

    async def stop(self) -> None:
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            if lane.task is not None:
                await cancel_and_wait(lane.task)
            await lane.processor.close()

    def wants(self, model_id: str, vmodel_id: str | None, method: str) -> bool:
        # Asked on every request: no generator when there is no lane.
        if not self._lanes:
            return False
        return any(lane.spec.wants(model_id, vmodel_id, method) for lane in self._lanes)

    def offer(self, payload: Payload) -> None:
        for lane in self._lanes:
            if not lane.spec.wants(payload.model_id, payload.vmodel_id, payload.method):
                continue
            try:
                lane.queue.put_nowait(payload)
            except asyncio.QueueFull:
                self._metrics.payload_dropped(lane.spec.name, "queue_full")

    async def _drain(self, lane: _Lane) -> None:
        while True:
            payload = await lane.queue.get()
            try:
                await lane.processor.process(payload)
            except Exception as exc:
                self._metrics.payload_dropped(lane.spec.name, "failed")
                self._failures.log(
                    logging.WARNING,
                    f"failed:{lane.spec.url}",
                    "payload processor %s could not take a payload: %s",
                    lane.spec.url,
                    exc,
                )
