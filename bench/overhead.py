"""What meshserve costs on the request path, against baselines measured in the same run.

    python bench/overhead.py [--targets floor,direct,up-inprocess,up-process,mlserver,
                                        mlserver-batched,up-pickle-pool,up-mlserver-pool,
                                        forwarded]
                             [--duration S] [--requests N] [--warmup S] [--quick]
                             [--rounds N] [--model logreg|forest] [--mlserver PATH]
                             [--max-batch-size N] [--max-batch-delay-ms MS] [--json]

One sklearn estimator, trained at start on scikit-learn's bundled iris data,
is saved as .skops (for meshserve) and .joblib (for MLServer). Each target
then runs alone, in its own process tree, on 127.0.0.1 over TCP gRPC:

- floor: a grpc.aio v2 server whose ModelInfer returns a fixed reply without
  decoding anything (bench/_floor.py): what gRPC and the client cost here;
- direct: ``meshserve runtime --model`` (the runtime alone, model preloaded);
- up-inprocess / up-process: ``meshserve up --runtime-host inprocess|process``
  with the model registered from a file and loaded on first request;
- mlserver: MLServer 1.7 with mlserver-sklearn serving the .joblib;
- forwarded: ``meshserve up --instances 2`` with the client calling the
  instance that does not hold the model, so every request is forwarded once
  to the other (bench/_forwarded.py); the same run measures the holder called
  directly (forwarded-local): forwarded / forwarded-local is the hop's cost;
- mlserver-batched: the same with MLServer's adaptive batching at the limits
  meshserve gets (max_batch_size; max_batch_time the delay, at least 1 ms,
  since MLServer batches only with a positive one).

meshserve's built-in runtime (direct, up-*) batches adaptively with
--max-batch-size (default 32, its own default; 1 turns it off) and
--max-batch-delay-ms (default 0).

For each target and concurrency (1, then 32) a fresh client process
(bench/_client.py, tritonclient gRPC) checks that the known row gets the
estimator's own prediction, warms up, then sends one-row requests until the
time budget or the request cap is reached. The script prints p50/p99 latency
and throughput per target side by side, the server's CPU per request, then
the ratios. --rounds N runs the whole sequence N times, interleaved, and
reports medians (a busy machine drifts). With --json the last line is one JSON object: the ratios
(up-inprocess / direct, up-process / direct, up-inprocess / mlserver and
/ mlserver-batched, forwarded / forwarded-local) and every raw number.
docs/benchmarks.md has a measured run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import multiprocessing
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import _client
import _targets
import numpy as np

CONCURRENCIES = (1, 32)
_MODEL_NAME = "iris"
_INPUT_NAME = "input-0"
_KNOWN_ROW = 75
"""Index of the iris row whose prediction is checked (class 1, not the first class)."""
_SEED = 0


@dataclass(frozen=True, slots=True)
class Settings:
    duration_s: float
    max_requests: int
    warmup_s: float
    warmup_min_requests: int
    start_timeout_s: float
    model: str
    rounds: int
    max_batch_size: int = 32
    max_batch_delay_ms: float = 0.0


@dataclass(slots=True)
class Point:
    """One target at one concurrency; numbers are None when it failed."""

    concurrency: int
    requests: int | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    throughput_rps: float | None = None
    server_cpu_ms_per_req: float | None = None
    client_cpu_cores: float | None = None
    """Client CPU time over wall time (1.0 = one core busy)."""
    first_answer_s: float | None = None
    error: str | None = None
    rounds: int = 1
    """Rounds this point combines (each number is the median over them)."""


@dataclass(slots=True)
class TargetResult:
    name: str
    description: str
    status: str = "ok"
    """ok, unavailable (cannot run here), failed (did not start or answered wrongly)."""
    reason: str | None = None
    verified: bool = False
    """The known row got the estimator's own prediction."""
    notes: list[str] = field(default_factory=list)
    points: dict[str, Point] = field(default_factory=dict)
    load_1m: list[float] = field(default_factory=list)
    """The machine's 1-minute load average when each round of this target started."""

    def point(self, concurrency: int) -> Point | None:
        found = self.points.get(f"c{concurrency}")
        return found if found is not None and found.error is None else None


# --- the model -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Model:
    files: _targets.ModelFiles
    row: tuple[float, ...]
    label: int


def make_model(kind: str, out_dir: pathlib.Path) -> Model:
    """Train the estimator on iris and save it for both kinds of server."""
    import joblib
    import skops.io
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = np.asarray(x, dtype=np.float64)
    estimator: Any
    if kind == "forest":
        estimator = RandomForestClassifier(n_estimators=10, max_depth=3, random_state=_SEED)
    else:
        estimator = LogisticRegression(max_iter=1000)
    estimator.fit(x, y)
    files = _targets.ModelFiles(
        name=_MODEL_NAME, skops=out_dir / "model.skops", joblib=out_dir / "model.joblib"
    )
    skops.io.dump(estimator, files.skops)
    joblib.dump(estimator, files.joblib)
    row = x[_KNOWN_ROW : _KNOWN_ROW + 1]
    return Model(
        files=files, row=tuple(float(v) for v in row[0]), label=int(estimator.predict(row)[0])
    )


# --- measuring -----------------------------------------------------------------


def measure_point(
    running: _targets.Running, *, model: Model, concurrency: int, settings: Settings
) -> Point:
    """Run one client process against ``running`` and summarise what it saw."""
    spec = _client.PointSpec(
        url=running.url,
        model_name=model.files.name,
        input_name=_INPUT_NAME,
        row=model.row,
        expected=model.label,
        concurrency=concurrency,
        warmup_s=settings.warmup_s,
        warmup_min_requests=settings.warmup_min_requests,
        duration_s=settings.duration_s,
        max_requests=settings.max_requests,
        ready_timeout_s=settings.start_timeout_s,
    )
    point = Point(concurrency=concurrency)
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    client = context.Process(target=_client.run_point, args=(spec, writer), daemon=True)
    client.start()
    writer.close()
    # Bounded whatever the client does: start-up, a lazy load, warm-up, the
    # budget, and slack for the last in-flight requests.
    deadline = time.monotonic() + settings.start_timeout_s * 2 + settings.warmup_s * 4
    deadline += settings.duration_s * 2 + 30
    cpu_start: float | None = None
    finished = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not reader.poll(remaining):
                point.error = "client did not finish in time"
                return point
            try:
                kind, payload = reader.recv()
            except EOFError:
                point.error = f"client exited with status {client.exitcode} without a result"
                return point
            if kind == "measuring":
                cpu_start = running.cpu_seconds()
            elif kind == "error":
                point.error = str(payload)
                return point
            else:
                cpu_end = running.cpu_seconds()
                started = cpu_end if cpu_start is None else cpu_start
                _summarise(point, payload, server_cpu_s=cpu_end - started)
                finished = True
                return point
    finally:
        reader.close()
        client.join(timeout=5 if finished else 0)
        if client.is_alive():
            client.kill()
            client.join(timeout=5)


def _summarise(point: Point, result: _client.PointResult, *, server_cpu_s: float) -> None:
    latencies = result.latencies_ms
    point.requests = int(latencies.size)
    if latencies.size == 0:
        point.error = "no request completed in the budget"
        return
    point.p50_ms = float(np.percentile(latencies, 50))
    point.p99_ms = float(np.percentile(latencies, 99))
    point.mean_ms = float(latencies.mean())
    point.throughput_rps = latencies.size / result.elapsed_s
    point.server_cpu_ms_per_req = server_cpu_s * 1000 / latencies.size
    point.client_cpu_cores = result.client_cpu_s / result.elapsed_s
    point.first_answer_s = result.verify_s


_POINT_NUMBERS = (
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "throughput_rps",
    "server_cpu_ms_per_req",
    "client_cpu_cores",
    "first_answer_s",
)


def combine_rounds(rounds: Sequence[TargetResult]) -> TargetResult:
    """One result from several rounds of a target: the median of each number.

    Any failure in any round wins, so a target that answered wrongly once
    posts no number.
    """
    first = rounds[0]
    if len(rounds) == 1:
        return first
    combined = TargetResult(name=first.name, description=first.description)
    for result in rounds:
        combined.load_1m.extend(result.load_1m)
        combined.notes.extend(n for n in result.notes if n not in combined.notes)
        combined.verified = combined.verified or result.verified
        if result.status != "ok" and combined.status == "ok":
            combined.status, combined.reason = result.status, result.reason
    for concurrency in CONCURRENCIES:
        key = f"c{concurrency}"
        points = [r.points[key] for r in rounds if key in r.points]
        if not points:
            continue
        failed = next((p for p in points if p.error is not None), None)
        if failed is not None:
            combined.points[key] = failed
            continue
        merged = Point(concurrency=concurrency, rounds=len(points))
        merged.requests = sum(p.requests or 0 for p in points)
        for name in _POINT_NUMBERS:
            values = [getattr(p, name) for p in points if getattr(p, name) is not None]
            setattr(merged, name, float(np.median(values)) if values else None)
        combined.points[key] = merged
    return combined


def run_target(
    target: _targets.Target,
    *,
    work_dir: pathlib.Path,
    model: Model,
    settings: Settings,
    mlserver: str | None,
) -> dict[str, TargetResult]:
    """The target's result, and one per extra view of the same processes
    (``Running.views``: the ``forwarded`` target's holder)."""
    load = os.getloadavg()[0]
    result = TargetResult(name=target.name, description=target.description, load_1m=[load])
    results = {target.name: result}
    target_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=work_dir))
    start = _targets.StartContext(
        work_dir=target_dir,
        model=model.files,
        label=model.label,
        start_timeout_s=settings.start_timeout_s,
        mlserver=mlserver,
        max_batch_size=settings.max_batch_size,
        max_batch_delay_ms=settings.max_batch_delay_ms,
        row=model.row,
    )
    try:
        with target.start(start) as running:
            result.notes.extend(running.notes)
            _log(f"{target.name}: serving on {running.url} (pid {running.pid})")
            if not _targets.wait_quiet(running):
                result.notes.append("still busy 15 s after start: measured anyway")
            urls = {target.name: running.url}
            for name, url in running.views:
                urls[name] = url
                results[name] = TargetResult(
                    name=name, description=f"{target.name}: {url}", load_1m=[load]
                )
            for concurrency in CONCURRENCIES:
                # Views side by side at each concurrency: the same machine state.
                for name, url in urls.items():
                    view = dataclasses.replace(running, url=url)
                    _measure_into(
                        results[name], view, model=model, concurrency=concurrency, settings=settings
                    )
    except _targets.Unavailable as exc:
        result.status, result.reason = "unavailable", str(exc)
    except _targets.StartFailed as exc:
        result.status, result.reason = "failed", f"did not start: {exc}"
    for one in results.values():
        if one.status == "ok" and not any(p.error is None for p in one.points.values()):
            errors = {p.error for p in one.points.values()}
            one.status, one.reason = "failed", "; ".join(sorted(e for e in errors if e))
        if one.status != "ok":
            _log(f"{one.name}: {one.status}: {one.reason}")
    return results


def _measure_into(
    result: TargetResult,
    running: _targets.Running,
    *,
    model: Model,
    concurrency: int,
    settings: Settings,
) -> None:
    point = measure_point(running, model=model, concurrency=concurrency, settings=settings)
    result.points[f"c{concurrency}"] = point
    if point.error is None:
        result.verified = True
        _log(
            f"{result.name} c={concurrency}: {point.requests} requests, "
            f"p50 {point.p50_ms:.3f} ms, {point.throughput_rps:.0f} req/s"
        )
    else:
        _log(f"{result.name} c={concurrency}: FAILED: {point.error}")


# --- report --------------------------------------------------------------------


def _ratio(
    results: dict[str, TargetResult], num: str, den: str, *, metric: str, concurrency: int
) -> tuple[float | None, str | None]:
    """num's metric over den's; None and the reason when either is missing."""
    values: list[float] = []
    for name in (num, den):
        target = results.get(name)
        if target is None:
            return None, f"{name} was not selected (--targets)"
        point = target.point(concurrency)
        if point is None:
            failed = target.points.get(f"c{concurrency}")
            why = target.reason or (failed.error if failed else None) or "no result"
            return None, f"{name}: {why}"
        value = getattr(point, metric)
        assert isinstance(value, float)
        values.append(value)
    return values[0] / values[1], None


_HEADLINE = (
    # key, numerator, denominator, metric, concurrency
    ("p50_ratio_c1", "up-inprocess", "direct", "p50_ms", 1),
    ("throughput_ratio_c32", "up-inprocess", "direct", "throughput_rps", 32),
    ("p50_ratio_c1_outproc", "up-process", "direct", "p50_ms", 1),
    ("throughput_ratio_c32_outproc", "up-process", "direct", "throughput_rps", 32),
    ("mlserver_throughput_ratio_c32", "up-inprocess", "mlserver", "throughput_rps", 32),
    (
        "mlserver_batched_throughput_ratio_c32",
        "up-inprocess",
        "mlserver-batched",
        "throughput_rps",
        32,
    ),
    ("forwarded_p50_ratio_c1", "forwarded", "forwarded-local", "p50_ms", 1),
    ("forwarded_throughput_ratio_c32", "forwarded", "forwarded-local", "throughput_rps", 32),
)
_CONTEXT = (
    ("direct_vs_floor_p50_c1", "direct", "floor", "p50_ms", 1),
    ("direct_vs_floor_throughput_c32", "direct", "floor", "throughput_rps", 32),
    ("direct_vs_mlserver_p50_c1", "direct", "mlserver", "p50_ms", 1),
    ("direct_vs_mlserver_throughput_c32", "direct", "mlserver", "throughput_rps", 32),
    ("up_inprocess_vs_mlserver_p50_c1", "up-inprocess", "mlserver", "p50_ms", 1),
    ("up_inproc_vs_mlsrv_inline_thr_c32", "up-inprocess", "mlserver-inline", "throughput_rps", 32),
    ("mlserver_vs_mlserver_inline_thr_c32", "mlserver", "mlserver-inline", "throughput_rps", 32),
    ("pickle_pool_vs_up_process_p50_c1", "up-pickle-pool", "up-process", "p50_ms", 1),
    ("pickle_pool_vs_direct_throughput_c32", "up-pickle-pool", "direct", "throughput_rps", 32),
    ("mlserver_pool_vs_mlserver_p50_c1", "up-mlserver-pool", "mlserver", "p50_ms", 1),
    ("mlserver_pool_vs_mlserver_thr_c32", "up-mlserver-pool", "mlserver", "throughput_rps", 32),
    ("up_process_vs_mlserver_thr_c32", "up-process", "mlserver", "throughput_rps", 32),
    ("up_process_vs_mlsrv_batched_thr_c32", "up-process", "mlserver-batched", "throughput_rps", 32),
    ("mlserver_batched_vs_mlserver_thr_c32", "mlserver-batched", "mlserver", "throughput_rps", 32),
)


def build_report(
    results: dict[str, TargetResult], *, settings: Settings, started: datetime.datetime
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for key, num, den, metric, concurrency in _HEADLINE:
        value, why = _ratio(results, num, den, metric=metric, concurrency=concurrency)
        report[key] = value
        if why is not None:
            reasons[key] = why
    mlserver = results.get("mlserver")
    if report["mlserver_throughput_ratio_c32"] is None:
        if mlserver is None:
            report["mlserver_reason"] = "mlserver was not selected (--targets)"
        elif mlserver.status != "ok" or mlserver.point(32) is None:
            report["mlserver_reason"] = mlserver.reason or reasons["mlserver_throughput_ratio_c32"]
    report["ratio_reasons"] = reasons
    extra: dict[str, float | None] = {}
    for key, num, den, metric, concurrency in _CONTEXT:
        extra[key] = _ratio(results, num, den, metric=metric, concurrency=concurrency)[0]
    report["context_ratios"] = extra
    report["targets"] = {name: asdict(result) for name, result in results.items()}
    report["settings"] = asdict(settings)
    report["machine"] = _machine()
    report["date"] = started.isoformat(timespec="seconds")
    return report


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _fmt(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec`` (which starts with a width), or a dash that wide."""
    width = int(spec.split(".")[0] or 0)
    return f"{'-':>{width}}" if value is None else format(value, spec)


def render_table(results: dict[str, TargetResult], report: dict[str, Any]) -> str:
    lines: list[str] = []
    header = f"{'target':<16}"
    for concurrency in CONCURRENCIES:
        header += f" | c={concurrency:<2} p50 ms   p99 ms    req/s"
    header += " | srv CPU ms/req c1  c32 | client cores c1  c32"
    lines.append(header)
    lines.append("-" * len(header))
    for name, result in results.items():
        row = f"{name:<16}"
        cpu_srv, cpu_cli = "", ""
        for concurrency in CONCURRENCIES:
            p = result.point(concurrency) or Point(concurrency)
            row += (
                f" | {_fmt(p.p50_ms, '11.3f')} {_fmt(p.p99_ms, '8.3f')} "
                f"{_fmt(p.throughput_rps, '8.0f')}"
            )
            cpu_srv += f" {_fmt(p.server_cpu_ms_per_req, '5.3f')}"
            cpu_cli += f" {_fmt(p.client_cpu_cores, '4.2f')}"
        row += f" |             {cpu_srv} |             {cpu_cli}"
        lines.append(row)
    loads = ", ".join(
        f"{name} {'/'.join(f'{v:.1f}' for v in r.load_1m)}" for name, r in results.items()
    )
    lines.append(f"load average (1 min) as each target started: {loads}")
    for name, result in results.items():
        if result.status != "ok":
            lines.append(f"{name}: {result.status}: {result.reason}")
        for key, p in result.points.items():
            if p.error is not None and result.status == "ok":
                lines.append(f"{name} {key}: failed: {p.error}")
        for note in result.notes:
            lines.append(f"{name}: note: {note}")
    lines.append("")
    lines.append("ratios")
    for key, num, den, metric, concurrency in _HEADLINE:
        label = f"{key} ({num} / {den}, {metric}, c={concurrency})"
        value = report[key]
        why = report["ratio_reasons"].get(key)
        lines.append(f"  {label:<78} {'null: ' + why if why else _fmt(value, '.2f')}")
    for key, value in report["context_ratios"].items():
        lines.append(f"  {key:<78} {_fmt(value, '.2f')}")
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _parse_targets(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in _targets.TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown target(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(_targets.TARGETS)}"
        )
    return [name for name in _targets.TARGETS if name in names]


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--targets",
        type=_parse_targets,
        default=list(_targets.TARGETS),
        help=f"comma-separated subset of: {','.join(_targets.TARGETS)}",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per point")
    parser.add_argument("--requests", type=int, default=100_000, help="request cap per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1.5 s per point, 0.3 s warm-up"
    )
    parser.add_argument(
        "--model",
        choices=("logreg", "forest"),
        default="logreg",
        help="logreg predicts in ~0.05 ms, so serving overhead dominates; forest is "
        "examples/make_models.py's 10-tree forest",
    )
    parser.add_argument(
        "--mlserver",
        default=None,
        metavar="PATH",
        help=f"mlserver executable (default: ${_targets.MLSERVER_ENV}, this venv, PATH, "
        ".venv-mlserver)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every target this many times, interleaved; report the medians",
    )
    parser.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="adaptive batching of meshserve's built-in runtime (runtime.maxBatchSize; 1: off) "
        "and of mlserver-batched",
    )
    parser.add_argument(
        "--max-batch-delay-ms",
        type=float,
        default=0.0,
        help="runtime.maxBatchDelayMs (0: batch only what queued during the previous call)",
    )
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds per start")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.requests = 1.5, 0.3, min(args.requests, 5000)
    if args.max_batch_size < 1 or not 0 <= args.max_batch_delay_ms <= 1000:
        parser.error("--max-batch-size must be 1 or more, --max-batch-delay-ms 0 to 1000")
    if args.duration <= 0 or args.requests <= 0 or args.rounds <= 0 or args.warmup < 0:
        parser.error("--duration, --requests and --rounds must be positive, --warmup not negative")
    return args


def main(argv: Sequence[str]) -> int:
    args = _parse_args(argv)
    _targets.interrupt_on_sigterm()
    settings = Settings(
        duration_s=args.duration,
        max_requests=args.requests,
        warmup_s=args.warmup,
        warmup_min_requests=20,
        start_timeout_s=args.start_timeout,
        model=args.model,
        rounds=args.rounds,
        max_batch_size=args.max_batch_size,
        max_batch_delay_ms=args.max_batch_delay_ms,
    )
    mlserver = _targets.find_mlserver(args.mlserver)
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="meshserve-bench-") as tmp:
        work_dir = pathlib.Path(tmp)
        model = make_model(args.model, work_dir)
        _log(f"model: {args.model}, known row {_KNOWN_ROW} -> predict {model.label}")
        rounds: dict[str, list[TargetResult]] = {}
        for number in range(1, settings.rounds + 1):
            if settings.rounds > 1:
                _log(f"round {number} of {settings.rounds}")
            for name in args.targets:
                done = rounds.get(name)
                if done and done[-1].status == "unavailable":
                    continue
                found = run_target(
                    _targets.TARGETS[name],
                    work_dir=work_dir,
                    model=model,
                    settings=settings,
                    mlserver=mlserver,
                )
                for view, result in found.items():
                    rounds.setdefault(view, []).append(result)
        results = {name: combine_rounds(done) for name, done in rounds.items()}
    report = build_report(results, settings=settings, started=started)
    print(
        f"meshserve overhead: sklearn {args.model} on iris, 1 row/request, tritonclient gRPC "
        f"over 127.0.0.1; {settings.duration_s:g} s or {settings.max_requests} requests per "
        f"point; {settings.rounds} round(s); {report['machine']['cores']} cores; {report['date']}; "
        f"meshserve batching: maxBatchSize {settings.max_batch_size}, maxBatchDelayMs "
        f"{settings.max_batch_delay_ms:g}"
    )
    print(render_table(results, report))
    if args.json:
        print(json.dumps(report, allow_nan=False))
    return 0 if all(r.status != "failed" for r in results.values()) else 1


@contextlib.contextmanager
def _exit_quietly_on_interrupt() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        _log("interrupted; targets stopped, work directory removed")
        raise SystemExit(130) from None


if __name__ == "__main__":
    with _exit_quietly_on_interrupt():
        sys.exit(main(sys.argv[1:]))
