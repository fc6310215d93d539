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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import _mesh_api
import grpc
import grpc.aio
import numpy as np

__all__ = ["TraceResult", "TraceSpec", "run_trace"]

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


async def run_trace(spec: TraceSpec) -> TraceResult:
    """Send ``spec.trace``; return once every sent request has finished."""
    latencies = np.full(len(spec.trace), np.nan)
    result = TraceResult(latencies_ms=latencies, elapsed_s=0.0, sent=0)
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
        next_index = 0
        clock = time.perf_counter_ns
        cpu0 = _cpu_s()
        start = clock()
        stop_at = start + int(spec.time_limit_s * 1e9)

        def fail(index: int, kind: str, detail: str) -> None:
            result.errors[kind] += 1
            if len(result.error_examples) < _ERROR_EXAMPLES:
                result.error_examples.append(f"request {index} ({spec.trace[index]}): {detail}")

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(spec.trace) and clock() < stop_at:
                index = next_index
                next_index += 1
                model_id = spec.trace[index]
                call = calls[index % len(calls)]
                t0 = clock()
                try:
                    reply = await call(spec.bodies[model_id], timeout=spec.request_timeout_s)
                except grpc.aio.AioRpcError as exc:
                    fail(index, exc.code().name, f"{exc.code().name}: {exc.details()}")
                    continue
                elapsed_ns = clock() - t0
                try:
                    label = _mesh_api.decode_label(reply)
                except ValueError as exc:
                    fail(index, "WRONG_ANSWER", str(exc))
                    continue
                if label != spec.expected[model_id]:
                    fail(
                        index,
                        "WRONG_ANSWER",
                        f"predict {label}, expected {spec.expected[model_id]}",
                    )
                    continue
                latencies[index] = elapsed_ns / 1e6

        async with asyncio.TaskGroup() as tasks:
            for _ in range(spec.concurrency):
                tasks.create_task(worker())
        result.elapsed_s = (clock() - start) / 1e9
        result.client_cpu_s = _cpu_s() - cpu0
        result.sent = next_index
    finally:
        for channel in channels:
            await channel.close()
    return result
