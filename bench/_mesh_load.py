"""The mesh benchmark's load driver: one trace, round-robin over instances,
a fixed number of requests in flight.

Request ``i`` goes to instance ``i % len(addresses)``, whichever instance
holds the model: routing inside the mesh is what is measured. Workers take
the next request as soon as they finish one, so exactly ``concurrency``
requests are in flight until the trace or the time limit runs out. A failed
or wrong request is counted and the trace goes on: the error count is part
of the result.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import _mesh_api
import grpc
import grpc.aio
import numpy as np

__all__ = ["RequestFailed", "Send", "TraceResult", "TraceSpec", "drive", "run_trace"]

_ERROR_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class TraceSpec:
    addresses: tuple[str, ...]
    """Each instance's own gRPC address, in round-robin order."""
    trace: Sequence[str]
    """The model id of each request, in order."""
    bodies: Mapping[str, bytes]
    """Serialized ModelInferRequest per model id."""
    expected: Mapping[str, int]
    """The right ``predict`` value per model id."""
    concurrency: int
    time_limit_s: float
    """No request starts after this many seconds."""
    request_timeout_s: float


@dataclass(slots=True)
class TraceResult:
    latencies_ms: np.ndarray
    """Per request in trace order; NaN where it failed or was never sent."""
    elapsed_s: float
    sent: int
    errors: Counter[str] = field(default_factory=Counter)
    """Failed requests by gRPC status name (WRONG_ANSWER for a bad reply)."""
    error_examples: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def completed(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.latencies_ms)))

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RequestFailed(Exception):
    """One request failed: ``kind`` is its gRPC status name, HTTP status or
    ``WRONG_ANSWER``; ``detail`` says what happened."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


Send = Callable[[int, str], Awaitable[int]]
"""Sends request ``index`` for a model id; returns the predicted label or
raises RequestFailed."""


async def drive(
    *,
    trace: Sequence[str],
    send: Send,
    expected: Mapping[str, int],
    concurrency: int,
    time_limit_s: float,
) -> TraceResult:
    """Send ``trace`` through ``send`` with ``concurrency`` in flight; return
    once every sent request has finished. Any server's driver: the mesh's
    (gRPC, ``run_trace``) and Ray Serve's (HTTP) share it."""
    latencies = np.full(len(trace), np.nan)
    result = TraceResult(latencies_ms=latencies, elapsed_s=0.0, sent=0)
    next_index = 0
    clock = time.perf_counter_ns
    cpu0 = _cpu_s()
    start = clock()
    stop_at = start + int(time_limit_s * 1e9)

    def fail(index: int, kind: str, detail: str) -> None:
        result.errors[kind] += 1
        if len(result.error_examples) < _ERROR_EXAMPLES:
            result.error_examples.append(f"request {index} ({trace[index]}): {detail}")

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(trace) and clock() < stop_at:
            index = next_index
            next_index += 1
            model_id = trace[index]
            t0 = clock()
            try:
                label = await send(index, model_id)
            except RequestFailed as exc:
                fail(index, exc.kind, exc.detail)
                continue
            elapsed_ns = clock() - t0
            if label != expected[model_id]:
                fail(index, "WRONG_ANSWER", f"predict {label}, expected {expected[model_id]}")
                continue
            latencies[index] = elapsed_ns / 1e6

    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    result.elapsed_s = (clock() - start) / 1e9
    result.client_cpu_s = _cpu_s() - cpu0
    result.sent = next_index
    return result


async def run_trace(spec: TraceSpec) -> TraceResult:
    """Send ``spec.trace`` to the mesh; return once every sent request has finished."""
    channels = [grpc.aio.insecure_channel(address) for address in spec.addresses]
    try:
        calls = [
            channel.unary_unary(
                _mesh_api.MODEL_INFER, request_serializer=None, response_deserializer=None
            )
            for channel in channels
        ]
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=spec.request_timeout_s)

        async def send(index: int, model_id: str) -> int:
            call = calls[index % len(calls)]
            try:
                reply = await call(spec.bodies[model_id], timeout=spec.request_timeout_s)
            except grpc.aio.AioRpcError as exc:
                name = exc.code().name
                raise RequestFailed(name, f"{name}: {exc.details()}") from None
            try:
                return _mesh_api.decode_label(reply)
            except ValueError as exc:
                raise RequestFailed("WRONG_ANSWER", str(exc)) from None

        return await drive(
            trace=spec.trace,
            send=send,
            expected=spec.expected,
            concurrency=spec.concurrency,
            time_limit_s=spec.time_limit_s,
        )
    finally:
        for channel in channels:
            await channel.close()
