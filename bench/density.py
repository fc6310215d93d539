"""Density: many small models loaded at once, ModelMesh's headline.

    python bench/density.py [--models N] [--mesh | --mesh-only] [--step-s S]
                            [--concurrency 1,2,4,...] [--seed N] [--json]

ModelMesh's headline is ~20,000 small models loaded on one 8-vCPU node
serving ~1,000 requests/s at single-digit-millisecond latency
(docs/benchmarks.md has the source). This bench does the same on
`meshserve up`:

1. At start one tiny scikit-learn LogisticRegression (4 features, 3
   classes) is trained and saved as .skops; every model id ``d000000``...
   is registered with that one file. meshserve keys its cache and its
   runtime by model id, so each registration is its own loaded copy (its
   own estimator object in the runtime, its own cache entry and size).
2. `meshserve up` (one instance; with ``--mesh`` three instances and a
   local etcd) runs with capacity for all of them; the models are
   registered over mmesh gRPC with ``loadNow`` and ``sync``, 16 calls in
   flight, so each call returns once its copy is loaded: the load rate is
   models / seconds of that loop. Admin.ListModels then says how many
   models have a loaded copy, and how many copies (the mesh's view).
3. Memory: the RSS of `up`'s process tree (instances and runtime processes;
   etcd left out) after loading, less the RSS before registering, divided
   by the loaded copies; beside it the caches' own accounting (each
   model's sizeBytes times its copies, over the copies).
4. Traffic: uniform random over all the model ids, raw v2 ModelInfer calls
   (bench/_mesh_load.py, round-robin over the instances' own addresses),
   every answer checked. The offered load is stepped up by the number of
   requests in flight (``--concurrency``, closed loop, one client process:
   on two cores a second client process would take the server's CPU), each
   step ``--step-s`` seconds; the result is the highest-throughput step
   with p50 under 10 ms and no errors.

With --json the last line is one JSON object. The exit status is 1 if a
model failed to load or a request failed. docs/benchmarks.md has a
measured run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import _mesh_api
import _mesh_cluster
import _mesh_load
import _mesh_models
import _targets
import grpc
import grpc.aio
import numpy as np
import psutil

from meshserve.protocol._pb import meshserve_admin_pb2 as admin
from meshserve.protocol._pb import meshserve_admin_pb2_grpc as admin_grpc

P50_GOAL_MS = 10.0
_MODEL_TYPE = "sklearn"
_CAPACITY_PER_MODEL = 2_000_000
"""Bytes of capacity per model: above both the size assumed before a load
(runtime.defaultModelSizeBytes, 1 MB) and the few KB a logistic regression
measures, so every model fits."""
_MIN_CAPACITY = 1024**3
_API_TIMEOUT_S = 600.0
_REQUEST_TIMEOUT_S = 30.0
_START_TIMEOUT_S = 180.0
_SETTLE_S = 2.0


def _tree_rss(root: int) -> tuple[int, int]:
    """Bytes of RSS of ``root`` and its descendants except etcd, and how many
    processes that is."""
    try:
        procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    total = count = 0
    for proc in procs:
        try:
            if "etcd" in proc.name():
                continue
            total += proc.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            continue
    return total, count


def _percentile(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values.size else float("nan")


async def _loaded_bytes(address: str) -> tuple[int, int, int]:
    """Models with a loaded copy, loaded copies, and the bytes the caches
    account for them: the mesh's view (Admin.ListModels gives each model's
    loaded copies and the size of one, the same from every instance)."""
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await admin_grpc.AdminStub(channel).ListModels(
            admin.ListModelsRequest(), timeout=_API_TIMEOUT_S
        )
    loaded = sum(1 for m in reply.models if m.copies > 0)
    copies = sum(m.copies for m in reply.models)
    return loaded, copies, sum(m.sizeBytes * m.copies for m in reply.models)


def _settled_loaded(address: str, *, models: int, timeout_s: float) -> tuple[int, int, int]:
    """``_loaded_bytes`` once every model has a copy, or after ``timeout_s``
    (copies loaded elsewhere reach this instance's mirror of the store a
    moment after their load returned)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = asyncio.run(_loaded_bytes(address))
        if result[0] >= models or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _step(
    *,
    addresses: tuple[str, ...],
    ids: list[str],
    body: dict[str, bytes],
    expected: dict[str, int],
    concurrency: int,
    seconds: float,
    rng: random.Random,
) -> dict[str, Any]:
    # Enough requests that the time limit, not the trace, ends the step.
    trace = rng.choices(ids, k=max(2000, int(concurrency * seconds * 2000)))
    spec = _mesh_load.TraceSpec(
        addresses=addresses,
        trace=trace,
        bodies=body,
        expected=expected,
        concurrency=concurrency,
        time_limit_s=seconds,
        request_timeout_s=_REQUEST_TIMEOUT_S,
    )
    result = asyncio.run(_mesh_load.run_trace(spec))
    done = result.latencies_ms[~np.isnan(result.latencies_ms)]
    return {
        "concurrency": concurrency,
        "requests": result.completed,
        "errors": result.error_count,
        "error_examples": result.error_examples,
        "throughput_rps": round(result.completed / result.elapsed_s, 1) if result.elapsed_s else 0,
        "p50_ms": _percentile(done, 50),
        "p99_ms": _percentile(done, 99),
        "distinct_models": len(set(trace[: result.sent])),
        "client_cpu_s": round(result.client_cpu_s, 2),
    }


def best_step(steps: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The step with the highest throughput among those with no error and
    a p50 under ``P50_GOAL_MS`` (None: no step met that)."""
    good = [s for s in steps if s["errors"] == 0 and s["p50_ms"] < P50_GOAL_MS]
    return max(good, key=lambda s: s["throughput_rps"]) if good else None


def run_density(
    work: pathlib.Path,
    *,
    models: int,
    instances: int,
    steps: Sequence[int],
    step_s: float,
    seed: int,
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    artifact = next(a for a in _mesh_models.make_artifacts(work, seed=seed) if a.name == "logreg")
    ids = [f"d{i:06d}" for i in range(models)]
    registrations = [(model_id, _MODEL_TYPE, str(artifact.path)) for model_id in ids]
    body = {
        m: _mesh_api.infer_body(
            model_id=m, input_name=_mesh_models.INPUT_NAME, row=_mesh_models.ROW
        )
        for m in ids
    }
    expected = dict.fromkeys(ids, artifact.expected)
    capacity = max(_MIN_CAPACITY, -(-models * _CAPACITY_PER_MODEL // instances))
    flags = _mesh_cluster.probe_up()
    with _mesh_cluster.start_mesh(
        work_dir=work,
        name=f"density-{instances}",
        flags=flags,
        instances=instances,
        capacity_bytes=capacity,
        start_timeout_s=_START_TIMEOUT_S,
    ) as mesh:
        addresses = tuple(i.grpc for i in mesh.endpoints.instances)
        asyncio.run(_mesh_api.wait_ready(addresses, timeout_s=_START_TIMEOUT_S))
        time.sleep(_SETTLE_S)
        rss_before, procs_before = _tree_rss(mesh.pid)
        cpu0 = mesh.cpu_seconds()
        start = time.perf_counter()
        asyncio.run(
            _mesh_api.register_models(
                addresses[0], registrations, timeout_s=_API_TIMEOUT_S, load_now=True
            )
        )
        load_s = time.perf_counter() - start
        load_cpu_s = mesh.cpu_seconds() - cpu0
        loaded, copies, accounted = _settled_loaded(
            addresses[0], models=models, timeout_s=_START_TIMEOUT_S
        )
        time.sleep(_SETTLE_S)
        rss_after, procs_after = _tree_rss(mesh.pid)
        rng = random.Random(seed)
        results = []
        for concurrency in steps:
            results.append(
                _step(
                    addresses=addresses,
                    ids=ids,
                    body=body,
                    expected=expected,
                    concurrency=concurrency,
                    seconds=step_s,
                    rng=rng,
                )
            )
        # Traffic may have loaded what registration did not, or evicted.
        loaded_end, copies_end, _ = asyncio.run(_loaded_bytes(addresses[0]))
        rss_end, _ = _tree_rss(mesh.pid)
    best = best_step(results)
    return {
        "models": models,
        "instances": instances,
        "model_artifact": "one LogisticRegression .skops shared by every id",
        "capacity_bytes_per_instance": capacity,
        "loaded_models": loaded,
        "loaded_models_end": loaded_end,
        "loaded_copies": copies,
        "loaded_copies_end": copies_end,
        "load_s": round(load_s, 1),
        "load_rate_models_per_s": round(models / load_s, 1),
        "load_server_cpu_s": round(load_cpu_s, 1),
        "rss_before_mb": round(rss_before / 1e6, 1),
        "rss_loaded_mb": round(rss_after / 1e6, 1),
        "rss_end_mb": round(rss_end / 1e6, 1),
        "processes": procs_after or procs_before,
        "rss_per_loaded_model_kb": round((rss_after - rss_before) / max(copies, 1) / 1e3, 2),
        "cache_accounted_per_model_kb": round(accounted / max(copies, 1) / 1e3, 2),
        "steps": results,
        "best": best,
        "throughput_rps": best["throughput_rps"] if best else 0.0,
        "p50_ms": best["p50_ms"] if best else None,
        "p99_ms": best["p99_ms"] if best else None,
        "p50_goal_met": best is not None,
    }


def _print_table(result: dict[str, Any]) -> None:
    print(
        f"{result['instances']} instance(s), {result['models']} models: "
        f"{result['loaded_models']} loaded ({result['loaded_copies']} copies) in "
        f"{result['load_s']} s "
        f"({result['load_rate_models_per_s']} models/s); RSS {result['rss_before_mb']} -> "
        f"{result['rss_loaded_mb']} MB over {result['processes']} processes = "
        f"{result['rss_per_loaded_model_kb']} KB/model "
        f"(cache accounts {result['cache_accounted_per_model_kb']} KB/model)"
    )
    print(f"{'in flight':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for step in result["steps"]:
        print(
            f"{step['concurrency']:>9} {step['throughput_rps']:>8} {step['p50_ms']:>7} "
            f"{step['p99_ms']:>7} {step['errors']:>6}"
        )
        for example in step["error_examples"]:
            print(f"    {example}")


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--mesh", action="store_true", help="also run 3 instances with etcd")
    parser.add_argument("--mesh-only", action="store_true", help="run only the 3-instance mesh")
    parser.add_argument(
        "--concurrency", default="1,2,4,8,16,32", help="steps of requests in flight"
    )
    parser.add_argument("--step-s", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    steps = [int(c) for c in args.concurrency.split(",")]
    _targets.interrupt_on_sigterm()
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        }
    }
    with tempfile.TemporaryDirectory(prefix="meshserve-density-") as tmp:
        layouts = [] if args.mesh_only else [("single", 1)]
        layouts += [("mesh", 3)] if args.mesh or args.mesh_only else []
        for key, instances in layouts:
            try:
                result = run_density(
                    pathlib.Path(tmp) / key,
                    models=args.models,
                    instances=instances,
                    steps=steps,
                    step_s=args.step_s,
                    seed=args.seed,
                )
            except _targets.Unavailable as exc:
                result = {"unavailable": str(exc)}
            else:
                _print_table(result)
            out[key] = result
    out["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(out))
    runs = [r for r in (out.get("single"), out.get("mesh")) if r and "unavailable" not in r]
    failed = any(
        r["loaded_models"] < r["models"] or any(s["errors"] for s in r["steps"]) for r in runs
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
