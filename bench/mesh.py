"""The mesh as one model cache: its hit ratio on a skewed trace, against an
offline LRU simulation of the same trace with the same total capacity.

    python bench/mesh.py [--models N] [--requests N] [--concurrency N] [--seed N]
                         [--instances N] [--capacity-ratio R] [--zipf S]
                         [--time-limit S] [--eviction-policy gdsf|lru]
                         [--ray auto|on|off] [--quick] [--json]

At start a few tiny sklearn estimators (a logistic regression and decision
trees of 4 to 2,048 leaves) are trained and saved as .skops; model id ``i``
is registered with artifact ``i % 7``, so every id is its own model to the
mesh, with its own cached copy. A calibration ``meshserve up`` (one
instance) loads each artifact once to read the size the runtime measures
for it; the per-instance capacity is then set so that the registered models
add up to ``--capacity-ratio`` (10) times the mesh's total capacity.

Then ``meshserve up --instances N`` runs (a local etcd, N instances), the
models are registered over mmesh gRPC, and a seeded trace of ``--requests``
requests, model popularity Zipf(``--zipf``) over the ids, is sent
round-robin to the instances' own addresses (request i to instance i % N)
with ``--concurrency`` in flight, as raw v2 ModelInfer calls; every answer
is checked against the estimator's own prediction.

A hit is a request served without triggering a load. Misses, loads and
evictions come from each instance's Prometheus metrics
(``modelmesh_cache_miss_milliseconds_count``,
``modelmesh_loadmodel_milliseconds_count``,
``modelmesh_age_at_eviction_milliseconds_count``) read before and after the
trace: hit_ratio = 1 - misses / requests. Where an instance exposes no
metrics, loads and evictions come from Admin.ListModels' per-model counters
and misses are taken to be the loads.

The same trace goes through offline simulations of one cache of the mesh's
total capacity with the models' measured sizes (bench/_mesh_trace.py):
ModelMesh's byte-weighted LRU, the mesh's GDSF policy, and Belady's optimum
(size-aware approximation). With the mesh's default policy (gdsf) the goal
is hit_ratio >= lru_sim_hit_ratio + 0.05; with --eviction-policy lru, within
0.05 of the LRU simulation. The output is a table; with --json the last line
is one JSON object (throughput_rps, p50_ms, p99_ms, hit_ratio,
lru_sim_hit_ratio, gdsf_sim_hit_ratio, opt_sim_hit_ratio, loads, evictions,
requests, errors, ...).

Then, with --ray auto (when scripts/ray-venv has installed it) or on, the
same trace goes to Ray Serve's model multiplexing over HTTP, one replica per
instance, each holding the mesh's capacity in models
(bench/_mesh_ray.py): ray_hit_ratio, ray_throughput_rps, ray_p50_ms,
ray_p99_ms, throughput_ratio_vs_ray (goal >= 2.0), p99_ratio_vs_ray (goal
<= 1.0). docs/benchmarks.md has a measured run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import _mesh_api
import _mesh_cluster
import _mesh_load
import _mesh_metrics
import _mesh_models
import _mesh_ray
import _mesh_trace
import _targets
import grpc
import numpy as np

HIT_GAP_GOAL = 0.05
"""With ``lru``, the mesh's hit ratio should be within this of the LRU simulation's."""
BEAT_LRU_GOAL = 0.05
"""With ``gdsf``, the mesh's hit ratio should beat the LRU simulation's by this."""
THROUGHPUT_VS_RAY_GOAL = 2.0
"""The mesh's throughput over Ray Serve's on the same trace, at least."""
P99_VS_RAY_GOAL = 1.0
"""The mesh's p99 over Ray Serve's, at most."""
_MODEL_TYPE = "sklearn"
_CALIBRATION_CAPACITY = 1024**3
_MIN_MODELS_PER_INSTANCE = 3
"""An instance must hold at least this many of the largest model: with less,
placement has no choice and loads fail for want of room, which is not what
this benchmark measures."""
_REQUEST_TIMEOUT_S = 60.0
_API_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class Settings:
    models: int
    requests: int
    concurrency: int
    seed: int
    instances: int
    capacity_ratio: float
    zipf: float
    time_limit_s: float
    start_timeout_s: float
    eviction_policy: str | None = None
    """``cache.evictionPolicy`` of the mesh (None: up's default, gdsf)."""
    ray: str = "auto"
    """Ray Serve side by side: ``on``, ``off``, or ``auto`` (when installed)."""


@dataclass(slots=True)
class Counts:
    """What the mesh did during the trace, summed over its instances."""

    source: str
    """``metrics`` or ``admin`` (ListModels counters; misses = loads)."""
    misses: float
    loads: float
    evictions: float
    admin_loads: int | None = None
    admin_evictions: int | None = None
    metric_deltas: dict[str, float] = field(default_factory=dict)
    """Every modelmesh_* counter's change, summed over instances."""
    notes: list[str] = field(default_factory=list)


# --- sizes and capacity ----------------------------------------------------------


async def measure_sizes(
    *,
    artifacts: list[_mesh_models.Artifact],
    work_dir: pathlib.Path,
    flags: _mesh_cluster.UpFlags,
    start_timeout_s: float,
) -> dict[str, int]:
    """Load each artifact once on a one-instance mesh and read its size."""
    with _mesh_cluster.start_mesh(
        work_dir=work_dir,
        name="calibrate",
        flags=flags,
        instances=1,
        capacity_bytes=_CALIBRATION_CAPACITY,
        start_timeout_s=start_timeout_s,
    ) as mesh:
        address = mesh.endpoints.instances[0].grpc
        await _mesh_api.wait_ready([address], timeout_s=start_timeout_s)
        probes = [(f"size-{a.name}", _MODEL_TYPE, str(a.path)) for a in artifacts]
        await _mesh_api.register_models(address, probes, timeout_s=_API_TIMEOUT_S, load_now=True)
        listed = {m.model_id: m for m in await _mesh_api.list_models(address)}
    sizes: dict[str, int] = {}
    for artifact in artifacts:
        model = listed.get(f"size-{artifact.name}")
        if model is None or model.size_bytes <= 0:
            state = "not listed" if model is None else f"{model.status}, size 0"
            raise RuntimeError(f"calibration: artifact {artifact.name} did not load ({state})")
        sizes[artifact.name] = model.size_bytes
    return sizes


def plan_capacity(*, model_sizes: Sequence[int], instances: int, capacity_ratio: float) -> int:
    """Per-instance capacity such that the models add up to ``capacity_ratio``
    times the capacity of all instances together."""
    capacity = int(sum(model_sizes) / (capacity_ratio * instances))
    largest = max(model_sizes)
    if capacity < _MIN_MODELS_PER_INSTANCE * largest:
        raise ValueError(
            f"{len(model_sizes)} models at ratio {capacity_ratio:g} over {instances} "
            f"instance(s) leave {capacity} bytes per instance, less than "
            f"{_MIN_MODELS_PER_INSTANCE} copies of the largest model ({largest} bytes): "
            "raise --models or lower --capacity-ratio"
        )
    return capacity


# --- counters --------------------------------------------------------------------


@dataclass(slots=True)
class Snapshot:
    metrics: list[dict[str, float] | None]
    """Per instance: totals per metric name, or None without a metrics URL."""
    admin: list[tuple[int, int]]
    """Per instance: (sum of loadCount, sum of evictionCount) over ListModels."""


async def snapshot(endpoints: _mesh_cluster.MeshEndpoints) -> Snapshot:
    metrics: list[dict[str, float] | None] = []
    admin: list[tuple[int, int]] = []
    for instance in endpoints.instances:
        if instance.metrics is None:
            metrics.append(None)
        else:
            metrics.append(await asyncio.to_thread(_mesh_metrics.scrape, instance.metrics))
        listed = await _mesh_api.list_models(instance.grpc)
        admin.append((sum(m.load_count for m in listed), sum(m.eviction_count for m in listed)))
    return Snapshot(metrics=metrics, admin=admin)


def count_between(before: Snapshot, after: Snapshot) -> Counts:
    """The mesh's misses, loads and evictions between two snapshots."""
    admin_loads = sum(a[0] - b[0] for a, b in zip(after.admin, before.admin, strict=True))
    admin_evictions = sum(a[1] - b[1] for a, b in zip(after.admin, before.admin, strict=True))
    if any(m is None for m in after.metrics):
        return Counts(
            source="admin",
            misses=admin_loads,
            loads=admin_loads,
            evictions=admin_evictions,
            admin_loads=admin_loads,
            admin_evictions=admin_evictions,
            notes=[
                "no metrics endpoint in endpoints.json: loads and evictions from "
                "Admin.ListModels counters, misses taken as loads"
            ],
        )
    deltas: dict[str, float] = {}
    total = _mesh_metrics.CacheCounters()
    notes: list[str] = []
    for index, (b, a) in enumerate(zip(before.metrics, after.metrics, strict=True)):
        assert a is not None and b is not None
        total = total + (
            _mesh_metrics.CacheCounters.from_totals(a) - _mesh_metrics.CacheCounters.from_totals(b)
        )
        missing = _mesh_metrics.missing_counters(a)
        if missing:
            notes.append(f"instance {index} exposes no {', '.join(missing)} (read as 0)")
        for name, value in a.items():
            if name.startswith("modelmesh_") and name.endswith(("_count", "_failure")):
                deltas[name] = deltas.get(name, 0.0) + value - b.get(name, 0.0)
    return Counts(
        source="metrics",
        misses=total.misses,
        loads=total.loads,
        evictions=total.evictions,
        admin_loads=admin_loads,
        admin_evictions=admin_evictions,
        metric_deltas=deltas,
        notes=notes,
    )


_API_REQUESTS = "modelmesh_api_request_milliseconds_count"
_CAPACITY_GAUGE = "modelmesh_instance_capacity_bytes"


def check_counts(counts: Counts, *, after: Snapshot, capacity_bytes: int, sent: int) -> list[str]:
    """Notes on anything in the counters that would make the hit ratio
    mean something other than it says."""
    notes = []
    for index, summed in enumerate(after.metrics):
        reported = None if summed is None else summed.get(_CAPACITY_GAUGE)
        if reported is not None and int(reported) != capacity_bytes:
            notes.append(
                f"instance {index} reports a capacity of {int(reported)} bytes, "
                f"not the {capacity_bytes} it was started with"
            )
    counted = counts.metric_deltas.get(_API_REQUESTS)
    if counted is not None and int(counted) != sent:
        notes.append(
            f"the instances counted {int(counted)} external requests for {sent} sent "
            "(a forwarded request counted twice, or requests not counted)"
        )
    if counts.misses > sent:
        notes.append(f"{counts.misses:.0f} misses for {sent} requests: misses counted twice?")
    return notes


# --- the run ---------------------------------------------------------------------


async def run(settings: Settings, work_dir: pathlib.Path) -> dict[str, Any]:
    """Everything but printing: returns the report."""
    report: dict[str, Any] = {"settings": asdict(settings)}
    flags = _mesh_cluster.probe_up()
    if settings.instances > 1 and not flags.instances:
        raise _targets.Unavailable(
            "`meshserve up` has no --instances flag yet; run with --instances 1 meanwhile"
        )
    trace_indices = _mesh_trace.make_trace(
        models=settings.models,
        requests=settings.requests,
        exponent=settings.zipf,
        seed=settings.seed,
    )
    model_ids = [_mesh_models.model_id(i) for i in range(settings.models)]
    trace = [model_ids[i] for i in trace_indices]

    artifacts = _mesh_models.make_artifacts(work_dir, seed=settings.seed)
    _log(f"{len(artifacts)} artifacts trained; measuring their sizes on a calibration mesh")
    artifact_sizes = await measure_sizes(
        artifacts=artifacts,
        work_dir=work_dir,
        flags=flags,
        start_timeout_s=settings.start_timeout_s,
    )
    model_artifact = {
        model_ids[i]: _mesh_models.artifact_of(i, artifacts) for i in range(settings.models)
    }
    sizes = {m: artifact_sizes[a.name] for m, a in model_artifact.items()}
    capacity = plan_capacity(
        model_sizes=list(sizes.values()),
        instances=settings.instances,
        capacity_ratio=settings.capacity_ratio,
    )
    total_bytes = sum(sizes.values())
    report["sizing"] = {
        "artifact_bytes": artifact_sizes,
        "total_model_bytes": total_bytes,
        "capacity_bytes_per_instance": capacity,
        "mesh_capacity_bytes": capacity * settings.instances,
        "capacity_flag": flags.capacity or "--config runtime.capacityBytes",
    }
    _log(
        f"sizes {min(artifact_sizes.values())}-{max(artifact_sizes.values())} bytes; "
        f"{settings.models} models = {total_bytes} bytes; capacity {capacity} bytes x "
        f"{settings.instances} instance(s)"
    )

    mesh_capacity = capacity * settings.instances
    simulated = _mesh_trace.simulate_lru(trace, sizes=sizes, capacity_bytes=mesh_capacity)
    report["lru_sim"] = _sim_report(simulated)
    report["opt_sim"] = _sim_report(
        _mesh_trace.simulate_belady(trace, sizes=sizes, capacity_bytes=mesh_capacity)
    )

    bodies = {
        m: _mesh_api.infer_body(
            model_id=m, input_name=_mesh_models.INPUT_NAME, row=_mesh_models.ROW
        )
        for m in model_ids
    }
    expected = {m: a.expected for m, a in model_artifact.items()}
    with _mesh_cluster.start_mesh(
        work_dir=work_dir,
        name="mesh",
        flags=flags,
        instances=settings.instances,
        capacity_bytes=capacity,
        start_timeout_s=settings.start_timeout_s,
        eviction_policy=settings.eviction_policy,
    ) as mesh:
        endpoints = mesh.endpoints
        addresses = tuple(i.grpc for i in endpoints.instances)
        _log(f"mesh up: public {endpoints.grpc}, instances {', '.join(addresses)}")
        await _mesh_api.wait_ready((endpoints.grpc, *addresses), timeout_s=settings.start_timeout_s)
        started = time.monotonic()
        await _mesh_api.register_models(
            endpoints.grpc,
            [(m, _MODEL_TYPE, str(model_artifact[m].path)) for m in model_ids],
            timeout_s=_API_TIMEOUT_S,
        )
        await _mesh_api.wait_listed(addresses, count=settings.models, timeout_s=_API_TIMEOUT_S)
        report["register_s"] = time.monotonic() - started
        _log(f"{settings.models} models registered in {report['register_s']:.1f} s; sending")

        before = await snapshot(endpoints)
        cpu_before = mesh.cpu_seconds()
        load_1m = os.getloadavg()[0]
        result = await _mesh_load.run_trace(
            _mesh_load.TraceSpec(
                addresses=addresses,
                trace=trace,
                bodies=bodies,
                expected=expected,
                concurrency=settings.concurrency,
                time_limit_s=settings.time_limit_s,
                request_timeout_s=_REQUEST_TIMEOUT_S,
            )
        )
        server_cpu_s = mesh.cpu_seconds() - cpu_before
        after = await snapshot(endpoints)
        final = [await _mesh_api.list_models(a) for a in addresses]
    counts = count_between(before, after)
    counts.notes += check_counts(counts, after=after, capacity_bytes=capacity, sent=result.sent)
    # The GDSF simulation's frequencies decay on the run's own clock.
    report["gdsf_sim"] = _sim_report(
        _mesh_trace.simulate_gdsf(
            trace,
            sizes=sizes,
            capacity_bytes=mesh_capacity,
            ms_per_request=result.elapsed_s * 1000 / max(1, result.sent),
        )
    )
    report.update(
        summarise(
            result=result,
            counts=counts,
            simulated_hit_ratio=simulated.hit_ratio,
            server_cpu_s=server_cpu_s,
        )
    )
    report["eviction_policy"] = settings.eviction_policy or "gdsf"
    report.update(policy_figures(report))
    report.update(
        await ray_side_by_side(
            settings,
            work_dir=work_dir,
            trace=trace,
            paths={m: str(a.path) for m, a in model_artifact.items()},
            expected=expected,
            mesh=report,
        )
    )
    report["load_1m_at_start"] = load_1m
    report["placement"] = placement(final, sizes=sizes, capacity_bytes=capacity)
    report["endpoints"] = {
        "grpc": endpoints.grpc,
        "instances": [asdict(i) for i in endpoints.instances],
    }
    return report


async def ray_side_by_side(
    settings: Settings,
    *,
    work_dir: pathlib.Path,
    trace: list[str],
    paths: dict[str, str],
    expected: dict[str, int],
    mesh: dict[str, Any],
) -> dict[str, Any]:
    """The same trace through Ray Serve's model multiplexing: one replica
    per mesh instance, each holding the mesh's capacity per instance in
    models (models / (capacity ratio x instances))."""
    if settings.ray == "off":
        return {"ray_status": "off"}
    python = _mesh_ray.find_ray_python()
    if python is None:
        reason = f"Ray is not installed at {_mesh_ray.RAY_VENV}: run scripts/ray-venv"
        if settings.ray == "on":
            raise _targets.Unavailable(reason)
        _log(f"Ray Serve skipped: {reason}")
        return {"ray_status": "unavailable", "ray_reason": reason}
    per_replica = max(1, round(settings.models / (settings.capacity_ratio * settings.instances)))
    _log(
        f"Ray Serve: {settings.instances} replica(s) x {per_replica} models "
        "(max_num_models_per_replica); sending the same trace over HTTP"
    )
    try:
        ran = await _mesh_ray.run_ray(
            python=python,
            work_dir=work_dir,
            paths=paths,
            trace=trace,
            rows=dict.fromkeys(paths, _mesh_models.ROW),
            expected=expected,
            replicas=settings.instances,
            models_per_replica=per_replica,
            concurrency=settings.concurrency,
            time_limit_s=settings.time_limit_s,
            start_timeout_s=settings.start_timeout_s,
            request_timeout_s=_REQUEST_TIMEOUT_S,
        )
    except _targets.StartFailed as exc:
        _log(f"Ray Serve failed to start: {exc}")
        return {"ray_status": "failed", "ray_reason": str(exc)}
    result = ran.result
    ok = result.latencies_ms[~np.isnan(result.latencies_ms)]
    sent = result.sent
    rps = ok.size / result.elapsed_s if result.elapsed_s > 0 and ok.size else None
    p50 = float(np.percentile(ok, 50)) if ok.size else None
    p99 = float(np.percentile(ok, 99)) if ok.size else None

    def ratio(ours: float | None, theirs: float | None) -> float | None:
        return ours / theirs if ours is not None and theirs else None

    return {
        "ray_status": "ok",
        "ray_protocol": "http",
        "ray_replicas": settings.instances,
        "ray_models_per_replica": per_replica,
        "ray_requests": sent,
        "ray_errors": result.error_count,
        "ray_errors_by_status": dict(result.errors),
        "ray_error_examples": result.error_examples,
        "ray_loads": ran.loads,
        "ray_hit_ratio": 1.0 - ran.loads / sent if ok.size else None,
        "ray_throughput_rps": rps,
        "ray_p50_ms": p50,
        "ray_p99_ms": p99,
        "ray_start_s": ran.start_s,
        "ray_server_cpu_ms_per_req": ran.cpu_s * 1000 / sent if sent else None,
        "throughput_ratio_vs_ray": ratio(mesh["throughput_rps"], rps),
        "p50_ratio_vs_ray": ratio(mesh["p50_ms"], p50),
        "p99_ratio_vs_ray": ratio(mesh["p99_ms"], p99),
        "throughput_ratio_goal": THROUGHPUT_VS_RAY_GOAL,
        "p99_ratio_goal": P99_VS_RAY_GOAL,
    }


def _sim_report(result: _mesh_trace.LruResult) -> dict[str, Any]:
    return {
        "hit_ratio": result.hit_ratio,
        "loads": result.loads,
        "evictions": result.evictions,
        "too_large": result.too_large,
    }


def policy_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The simulations beside the mesh, and the goal that applies to its
    policy: with gdsf, beat the LRU simulation by ``BEAT_LRU_GOAL``; with
    lru, stay within ``HIT_GAP_GOAL`` of it."""
    lru = report["lru_sim"]["hit_ratio"]
    hit = report["hit_ratio"]
    policy = report["eviction_policy"]
    if hit is None:
        met = None
    elif policy == "lru":
        met = lru - hit <= HIT_GAP_GOAL
    else:
        met = hit >= lru + BEAT_LRU_GOAL
    return {
        "gdsf_sim_hit_ratio": report["gdsf_sim"]["hit_ratio"],
        "opt_sim_hit_ratio": report["opt_sim"]["hit_ratio"],
        "gain_over_lru_sim": None if hit is None else hit - lru,
        "beat_lru_goal": BEAT_LRU_GOAL,
        "policy_goal_met": met,
    }


def summarise(
    *,
    result: _mesh_load.TraceResult,
    counts: Counts,
    simulated_hit_ratio: float,
    server_cpu_s: float,
) -> dict[str, Any]:
    ok = result.latencies_ms[~np.isnan(result.latencies_ms)]
    sent = result.sent
    # With no request served there is nothing a hit ratio could describe.
    hit_ratio = 1.0 - counts.misses / sent if ok.size else None
    return {
        "requests": sent,
        "completed": int(ok.size),
        "errors": result.error_count,
        "errors_by_status": dict(result.errors),
        "error_examples": result.error_examples,
        "stopped_by_time_limit": sent < len(result.latencies_ms),
        "elapsed_s": result.elapsed_s,
        "throughput_rps": ok.size / result.elapsed_s if result.elapsed_s > 0 else None,
        "p50_ms": float(np.percentile(ok, 50)) if ok.size else None,
        "p99_ms": float(np.percentile(ok, 99)) if ok.size else None,
        "mean_ms": float(ok.mean()) if ok.size else None,
        "hit_ratio": hit_ratio,
        "hit_source": counts.source,
        "misses": counts.misses,
        "loads": counts.loads,
        "evictions": counts.evictions,
        "admin_loads": counts.admin_loads,
        "admin_evictions": counts.admin_evictions,
        "metric_deltas": counts.metric_deltas,
        "lru_sim_hit_ratio": simulated_hit_ratio,
        "hit_gap": simulated_hit_ratio - hit_ratio if hit_ratio is not None else None,
        "hit_gap_goal": HIT_GAP_GOAL,
        "server_cpu_ms_per_req": server_cpu_s * 1000 / sent if sent else None,
        "client_cpu_cores": result.client_cpu_s / result.elapsed_s if result.elapsed_s else None,
        "notes": counts.notes,
    }


def placement(
    listed: list[list[_mesh_api.ListedModel]], *, sizes: dict[str, int], capacity_bytes: int
) -> dict[str, Any]:
    """Where copies sat when the trace ended: per instance, and how many
    models had more than one copy (space the single simulated LRU does not spend)."""
    holders: dict[str, int] = {}
    per_instance = []
    mismatched = 0
    for models in listed:
        held = [m for m in models if m.size_bytes > 0]
        for m in held:
            holders[m.model_id] = holders.get(m.model_id, 0) + 1
            if m.model_id in sizes and m.size_bytes != sizes[m.model_id]:
                mismatched += 1
        per_instance.append(
            {
                "copies": len(held),
                "used_bytes": sum(m.size_bytes for m in held),
                "capacity_bytes": capacity_bytes,
            }
        )
    return {
        "instances": per_instance,
        "models_with_copies": len(holders),
        "models_with_several_copies": sum(1 for n in holders.values() if n > 1),
        "sizes_differing_from_calibration": mismatched,
    }


# --- output ----------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    width = int(spec.split(".")[0] or 0)
    return f"{'-':>{width}}" if value is None else format(value, spec)


def render(report: dict[str, Any]) -> str:
    s = report["settings"]
    sizing = report["sizing"]
    sizes = sizing["artifact_bytes"].values()
    lines = [
        f"meshserve mesh: {s['instances']} instance(s), {s['models']} models "
        f"({len(sizing['artifact_bytes'])} artifacts, {min(sizes) // 1024}-"
        f"{max(sizes) // 1024} KiB), Zipf({s['zipf']:g}), {s['requests']} requests, "
        f"{s['concurrency']} in flight, seed {s['seed']}",
        f"capacity {sizing['capacity_bytes_per_instance'] / 2**20:.2f} MiB per instance; "
        f"models {sizing['total_model_bytes'] / 2**20:.1f} MiB = "
        f"{sizing['total_model_bytes'] / sizing['mesh_capacity_bytes']:.1f}x the mesh's "
        f"capacity; {report['machine']['cores']} cores; {report['date']}",
        "",
    ]
    header = (
        f"{'':<16} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>8} "
        f"{'hit ratio':>9} {'loads':>6} {'evictions':>9}"
    )
    lines += [header, "-" * len(header)]
    lines.append(
        f"{'mesh':<16} {report['requests']:>8} {report['errors']:>6} "
        f"{_fmt(report['throughput_rps'], '7.0f')} {_fmt(report['p50_ms'], '7.2f')} "
        f"{_fmt(report['p99_ms'], '8.2f')} {_fmt(report['hit_ratio'], '9.3f')} "
        f"{report['loads']:>6.0f} {report['evictions']:>9.0f}"
    )
    if report.get("ray_status") == "ok":
        lines.append(
            f"{'Ray Serve (HTTP)':<16} {report['ray_requests']:>8} {report['ray_errors']:>6} "
            f"{_fmt(report['ray_throughput_rps'], '7.0f')} {_fmt(report['ray_p50_ms'], '7.2f')} "
            f"{_fmt(report['ray_p99_ms'], '8.2f')} {_fmt(report['ray_hit_ratio'], '9.3f')} "
            f"{report['ray_loads']:>6} {'-':>9}"
        )
    for label, key in (
        ("LRU simulation", "lru_sim"),
        ("GDSF simulation", "gdsf_sim"),
        ("Belady (offline)", "opt_sim"),
    ):
        sim = report[key]
        lines.append(
            f"{label:<16} {s['requests']:>8} {'-':>6} {'-':>7} {'-':>7} {'-':>8} "
            f"{sim['hit_ratio']:>9.3f} {sim['loads']:>6} {sim['evictions']:>9}"
        )
    met = report["policy_goal_met"]
    verdict = "-" if met is None else ("met" if met else "MISSED")
    if report["errors"]:
        verdict += f" ({report['errors']} failed requests)"
    lines.append("")
    if report["eviction_policy"] == "lru":
        goal = f"hit gap (LRU simulation - mesh, policy lru): {_fmt(report['hit_gap'], '.3f')} "
        goal += f"(goal: at most {HIT_GAP_GOAL}): {verdict}"
    else:
        goal = f"gain over the LRU simulation (policy {report['eviction_policy']}): "
        goal += f"{_fmt(report['gain_over_lru_sim'], '.3f')} (goal: at least {BEAT_LRU_GOAL}): "
        goal += verdict
    lines.append(goal)
    if report.get("ray_status") == "ok":
        lines.append(
            f"vs Ray Serve: throughput x{_fmt(report['throughput_ratio_vs_ray'], '.2f')} "
            f"(goal: at least {THROUGHPUT_VS_RAY_GOAL}), p99 "
            f"x{_fmt(report['p99_ratio_vs_ray'], '.2f')} (goal: at most {P99_VS_RAY_GOAL}), "
            f"p50 x{_fmt(report['p50_ratio_vs_ray'], '.2f')}; Ray: "
            f"{report['ray_replicas']} replicas x {report['ray_models_per_replica']} models"
        )
    elif "ray_reason" in report:
        lines.append(f"Ray Serve: {report['ray_status']} ({report['ray_reason']})")
    lines.append(
        f"hits from: {report['hit_source']}; server CPU "
        f"{_fmt(report['server_cpu_ms_per_req'], '.2f')} ms/request; client "
        f"{_fmt(report['client_cpu_cores'], '.2f')} cores; load average at start "
        f"{report['load_1m_at_start']:.1f}"
    )
    placed = report["placement"]
    copies = ", ".join(
        f"{p['copies']} ({p['used_bytes'] / 2**20:.2f} MiB)" for p in placed["instances"]
    )
    lines.append(
        f"copies at the end per instance: {copies}; models with several copies: "
        f"{placed['models_with_several_copies']}"
    )
    if report["stopped_by_time_limit"]:
        lines.append(f"stopped by --time-limit after {report['requests']} requests")
    for note in report["notes"]:
        lines.append(f"note: {note}")
    if placed["sizes_differing_from_calibration"]:
        lines.append(
            f"note: {placed['sizes_differing_from_calibration']} copies report a size other "
            "than the calibration's"
        )
    for example in report["error_examples"]:
        lines.append(f"error: {example}")
    return "\n".join(lines)


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


# --- main ------------------------------------------------------------------------


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", type=int, default=1000, help="registered model ids")
    parser.add_argument("--requests", type=int, default=20_000, help="length of the trace")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--seed", type=int, default=0, help="seeds the trace and the models")
    parser.add_argument("--instances", type=int, default=3, help="instances in the mesh")
    parser.add_argument(
        "--capacity-ratio",
        type=float,
        default=10.0,
        help="total size of the models / total capacity of the instances",
    )
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of popularity")
    parser.add_argument(
        "--time-limit", type=float, default=540.0, help="seconds after which no request starts"
    )
    parser.add_argument("--start-timeout", type=float, default=120.0, help="seconds per start")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 300 models, 3,000 requests"
    )
    parser.add_argument(
        "--eviction-policy",
        choices=("gdsf", "lru"),
        default=None,
        help="the mesh's cache.evictionPolicy (default: up's, gdsf)",
    )
    parser.add_argument(
        "--ray",
        choices=("auto", "on", "off"),
        default="auto",
        help="run the same trace against Ray Serve (scripts/ray-venv); auto: when installed",
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.requests = 300, 3000
    if min(args.models, args.requests, args.concurrency, args.instances) <= 0:
        parser.error("--models, --requests, --concurrency and --instances must be positive")
    if args.capacity_ratio <= 0 or args.zipf <= 0 or args.time_limit <= 0:
        parser.error("--capacity-ratio, --zipf and --time-limit must be positive")
    return args


def main(argv: Sequence[str]) -> int:
    args = _parse_args(argv)
    _targets.interrupt_on_sigterm()
    settings = Settings(
        models=args.models,
        requests=args.requests,
        concurrency=args.concurrency,
        seed=args.seed,
        instances=args.instances,
        capacity_ratio=args.capacity_ratio,
        zipf=args.zipf,
        time_limit_s=args.time_limit,
        start_timeout_s=args.start_timeout,
        eviction_policy=args.eviction_policy,
        ray=args.ray,
    )
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="meshserve-bench-mesh-") as tmp:
        try:
            report = asyncio.run(run(settings, pathlib.Path(tmp)))
        except _targets.Unavailable as exc:
            _log(f"unavailable: {exc}")
            if args.json:
                print(json.dumps({"status": "unavailable", "reason": str(exc)}))
            return 2
        except (_targets.StartFailed, grpc.RpcError, RuntimeError, TimeoutError, ValueError) as exc:
            _log(f"failed: {exc}")
            if args.json:
                print(json.dumps({"status": "failed", "reason": str(exc)}))
            return 1
    report["status"] = "ok"
    report["machine"] = _machine()
    report["date"] = started.isoformat(timespec="seconds")
    print(render(report))
    if args.json:
        print(json.dumps(report, allow_nan=False))
    return 0 if report["errors"] == 0 else 1


@contextlib.contextmanager
def _exit_quietly_on_interrupt() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        _log("interrupted; mesh stopped, work directory removed")
        raise SystemExit(130) from None


if __name__ == "__main__":
    with _exit_quietly_on_interrupt():
        sys.exit(main(sys.argv[1:]))
