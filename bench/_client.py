"""The load client: one process per measured point, talking tritonclient gRPC.

``run_point`` is the body of that process (started with multiprocessing's
spawn context by ``bench/overhead.py``). In order it

1. checks correctness: one request for the known row must return the
   estimator's own ``predict`` (retrying while the server says UNAVAILABLE,
   which covers a lazily loaded model);
2. warms up at the point's concurrency;
3. tells the parent it is measuring (so the parent can read the server's CPU
   time), then sends requests until the time budget or the request cap is
   reached, recording each request's latency;
4. checks correctness once more and sends the result.

Concurrency 1 uses the synchronous client in a loop. Higher concurrency uses
``tritonclient.grpc.aio`` with that many tasks on one channel in this one
process: on two cores this leaves the other core to the server, whereas
several client processes or a thread per request would compete with the
server for CPU (and threads also for the GIL). The client's own CPU use is
reported so a client-bound point can be told apart.

Any failed request ends the point with an error: a target that fails fast
must not post a fast number.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

__all__ = ["PointResult", "PointSpec", "run_point"]


@dataclass(frozen=True, slots=True)
class PointSpec:
    """One measured point: a target address and a load shape."""

    url: str
    """host:port of the target's gRPC v2 endpoint."""
    model_name: str
    input_name: str
    row: tuple[float, ...]
    """The single row sent in every request (shape [1, n], FP64)."""
    expected: int
    """The estimator's own prediction for ``row``."""
    concurrency: int
    warmup_s: float
    warmup_min_requests: int
    duration_s: float
    max_requests: int
    ready_timeout_s: float
    """How long the first request may keep getting UNAVAILABLE (lazy load)."""


@dataclass(frozen=True, slots=True)
class PointResult:
    latencies_ms: np.ndarray
    elapsed_s: float
    """Wall time from the first measured request to the last reply."""
    client_cpu_s: float
    """CPU time this client process used over the measured window."""
    verify_s: float
    """Time the first correct answer took (includes a lazy load)."""


class PointError(Exception):
    """A request failed or returned a wrong answer."""


def run_point(spec: PointSpec, conn: Connection) -> None:
    """Process body: measure ``spec`` and send ("done", PointResult) or ("error", text)."""
    # Ctrl-C reaches the whole foreground group; the parent stops this
    # process itself, so it need not print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if spec.concurrency == 1:
            message: tuple[str, object] = ("done", _run_sync(spec, conn))
        else:
            message = ("done", asyncio.run(_run_async(spec, conn)))
    except BrokenPipeError:  # the parent is gone
        return
    except Exception as exc:
        message = ("error", f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(BrokenPipeError):
        conn.send(message)
    conn.close()


def _inputs(module: Any, spec: PointSpec) -> tuple[list[Any], list[Any]]:
    data = np.asarray([spec.row], dtype=np.float64)
    infer_input = module.InferInput(spec.input_name, list(data.shape), "FP64")
    infer_input.set_data_from_numpy(data)
    # Only `predict`: meshserve would also compute predict_proba if no output
    # were named, MLServer would not; naming it gives every target one job.
    return [infer_input], [module.InferRequestedOutput("predict")]


def _check(result: Any, spec: PointSpec) -> None:
    got = result.as_numpy("predict")
    # Shapes differ by server (meshserve [1], MLServer [1, 1]); the value may not.
    if got is None or got.size != 1 or int(got.reshape(-1)[0]) != spec.expected:
        raise PointError(f"wrong answer: predict={got!r}, expected [{spec.expected}]")


def _is_unavailable(exc: Exception) -> bool:
    status = getattr(exc, "status", None)
    return callable(status) and "UNAVAILABLE" in str(status())


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_sync(spec: PointSpec, conn: Connection) -> PointResult:
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(spec.url)
    try:
        inputs, outputs = _inputs(triton, spec)

        def infer(timeout_s: float | None = None) -> Any:
            return client.infer(spec.model_name, inputs, outputs=outputs, client_timeout=timeout_s)

        verify_s = _verify_sync(infer, spec)
        _loop_sync(infer, duration_s=spec.warmup_s, min_requests=spec.warmup_min_requests)
        conn.send(("measuring", None))
        cpu0 = _cpu_s()
        start = time.perf_counter()
        latencies = _loop_sync(infer, duration_s=spec.duration_s, max_requests=spec.max_requests)
        elapsed = time.perf_counter() - start
        cpu = _cpu_s() - cpu0
        _check(infer(spec.ready_timeout_s), spec)
        return PointResult(np.asarray(latencies) / 1e6, elapsed, cpu, verify_s)
    finally:
        client.close()


def _verify_sync(infer: Callable[[float | None], Any], spec: PointSpec) -> float:
    start = time.perf_counter()
    deadline = start + spec.ready_timeout_s
    while True:
        try:
            result = infer(spec.ready_timeout_s)
            break
        except Exception as exc:
            if not _is_unavailable(exc) or time.perf_counter() > deadline:
                raise
            time.sleep(0.2)
    _check(result, spec)
    return time.perf_counter() - start


def _loop_sync(
    infer: Callable[[], Any],
    *,
    duration_s: float,
    min_requests: int = 0,
    max_requests: int | None = None,
) -> list[int]:
    latencies: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(duration_s * 1e9)
    while True:
        t0 = clock()
        if max_requests is not None and len(latencies) >= max_requests:
            break
        if t0 >= deadline and len(latencies) >= min_requests:
            break
        infer()
        latencies.append(clock() - t0)
    return latencies


async def _run_async(spec: PointSpec, conn: Connection) -> PointResult:
    import tritonclient.grpc.aio as triton

    client = triton.InferenceServerClient(spec.url)
    try:
        inputs, outputs = _inputs(triton, spec)

        async def infer(timeout_s: float | None = None) -> Any:
            return await client.infer(
                spec.model_name, inputs, outputs=outputs, client_timeout=timeout_s
            )

        start = time.perf_counter()
        deadline = start + spec.ready_timeout_s
        while True:
            try:
                result = await infer(spec.ready_timeout_s)
                break
            except Exception as exc:
                if not _is_unavailable(exc) or time.perf_counter() > deadline:
                    raise
                await asyncio.sleep(0.2)
        _check(result, spec)
        verify_s = time.perf_counter() - start

        await _loop_async(
            infer,
            concurrency=spec.concurrency,
            duration_s=spec.warmup_s,
            min_requests=spec.warmup_min_requests,
        )
        conn.send(("measuring", None))
        cpu0 = _cpu_s()
        start = time.perf_counter()
        latencies = await _loop_async(
            infer,
            concurrency=spec.concurrency,
            duration_s=spec.duration_s,
            max_requests=spec.max_requests,
        )
        elapsed = time.perf_counter() - start
        cpu = _cpu_s() - cpu0
        _check(await infer(spec.ready_timeout_s), spec)
        return PointResult(np.asarray(latencies) / 1e6, elapsed, cpu, verify_s)
    finally:
        await client.close()


async def _loop_async(
    infer: Callable[[], Any],
    *,
    concurrency: int,
    duration_s: float,
    min_requests: int = 0,
    max_requests: int | None = None,
) -> list[int]:
    latencies: list[int] = []
    clock = time.perf_counter_ns
    deadline = clock() + int(duration_s * 1e9)
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while True:
            t0 = clock()
            if max_requests is not None and issued >= max_requests:
                return
            if t0 >= deadline and issued >= min_requests:
                return
            issued += 1
            await infer()
            latencies.append(clock() - t0)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(concurrency):
            tasks.create_task(worker())
    return latencies
