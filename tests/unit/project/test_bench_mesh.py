"""bench/mesh.py's pure parts: the trace, the LRU simulation, reading
Prometheus metrics and endpoints.json, and the counts the hit ratio comes from."""

from __future__ import annotations

import asyncio
import http.server
import importlib
import math
import pathlib
import sys
import threading
from collections import Counter
from types import ModuleType

import grpc
import grpc.aio
import numpy as np
import pytest

from meshserve.protocol._pb import grpc_predict_v2_pb2 as v2

BENCH = pathlib.Path(__file__).resolve().parents[3] / "bench"


def _bench(name: str) -> ModuleType:
    # The bench scripts import their siblings as top-level modules, as they
    # do when run from bench/.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


trace_mod = _bench("_mesh_trace")
metrics_mod = _bench("_mesh_metrics")
cluster_mod = _bench("_mesh_cluster")
api_mod = _bench("_mesh_api")
load_mod = _bench("_mesh_load")
mesh = _bench("mesh")


# --- the LRU simulation ---------------------------------------------------------


def _simulate(trace: str, sizes: dict[str, int], capacity: int) -> tuple[int, int, int]:
    result = trace_mod.simulate_lru(list(trace), sizes=sizes, capacity_bytes=capacity)
    assert result.requests == len(trace)
    return result.hits, result.loads, result.evictions


def test_lru_evicts_the_least_recently_used_not_the_first_loaded() -> None:
    # a b a c: c evicts b (a was used after b); b then evicts a; a evicts c.
    hits, loads, evictions = _simulate("abacba", dict.fromkeys("abc", 1), capacity=2)
    assert (hits, loads, evictions) == (1, 5, 3)


def test_lru_weighs_bytes() -> None:
    sizes = {"a": 3, "b": 1, "c": 1}
    # a(3) b(1) fill 4; c needs 1 more: evicts a alone; a needs 3 of the 2
    # free: evicts b (older than c); c hits.
    hits, loads, evictions = _simulate("abcac", sizes, capacity=4)
    assert (hits, loads, evictions) == (1, 4, 2)


def test_lru_evicts_several_small_models_for_one_big_one() -> None:
    sizes = {"a": 1, "b": 1, "c": 1, "d": 3}
    hits, loads, evictions = _simulate("abcdd", sizes, capacity=3)
    assert (hits, loads, evictions) == (1, 4, 3)


def test_lru_hits_every_repeat_when_everything_fits() -> None:
    result = trace_mod.simulate_lru(
        [1, 2, 3, 1, 2, 3, 3], sizes={1: 5, 2: 5, 3: 5}, capacity_bytes=15
    )
    assert (result.hits, result.loads, result.evictions) == (4, 3, 0)
    assert result.hit_ratio == pytest.approx(4 / 7)
    assert result.misses == 3


def test_lru_never_caches_a_model_bigger_than_the_capacity() -> None:
    result = trace_mod.simulate_lru(
        ["a", "big", "a", "big"], sizes={"a": 1, "big": 10}, capacity_bytes=5
    )
    assert (result.hits, result.loads, result.evictions, result.too_large) == (1, 1, 0, 2)


def test_lru_on_an_empty_trace() -> None:
    result = trace_mod.simulate_lru([], sizes={}, capacity_bytes=1)
    assert result.requests == 0 and result.hit_ratio == 0.0


# --- the trace --------------------------------------------------------------------


def test_belady_on_a_hand_checked_trace() -> None:
    # Room for two: a and b load; c and d are never asked for again, so
    # the optimum serves them without caching them and keeps a and b.
    result = trace_mod.simulate_belady(
        list("abcabdab"), sizes=dict.fromkeys("abcd", 1), capacity_bytes=2
    )
    assert (result.hits, result.loads, result.evictions) == (4, 2, 0)
    # LRU on the same trace hits nothing.
    assert _simulate("abcabdab", dict.fromkeys("abcd", 1), 2) == (0, 8, 6)


def test_belady_evicts_the_model_needed_last() -> None:
    # Room for two: c arrives with a needed next and b needed last, so b
    # goes (LRU would drop a); at the end b comes back and loads again.
    sizes = dict.fromkeys("abc", 1)
    result = trace_mod.simulate_belady(list("abcacb"), sizes=sizes, capacity_bytes=2)
    assert (result.hits, result.loads, result.evictions) == (2, 4, 2)
    assert _simulate("abcacb", sizes, 2) == (1, 5, 3)


def test_belady_frees_the_big_model_first_when_both_come_back_as_late() -> None:
    # big (3 units) and s1 are both asked for again after s2's request,
    # big after s1: big goes, s1 and s2 stay; then big misses once more.
    sizes = {"big": 3, "s1": 1, "s2": 1}
    result = trace_mod.simulate_belady(
        ["big", "s1", "s2", "s1", "s2", "big"], sizes=sizes, capacity_bytes=4
    )
    assert (result.hits, result.evictions) == (2, 1)


def test_belady_never_does_worse_than_lru_or_gdsf() -> None:
    trace = [f"m{i}" for i in trace_mod.make_trace(models=60, requests=2000, exponent=1.1, seed=3)]
    sizes = {f"m{i}": 1 + i % 4 for i in range(60)}
    args = {"sizes": sizes, "capacity_bytes": 20}
    optimum = trace_mod.simulate_belady(trace, **args).hits
    assert optimum >= trace_mod.simulate_lru(trace, **args).hits
    assert optimum >= trace_mod.simulate_gdsf(trace, **args).hits


def test_gdsf_simulation_keeps_the_frequent_model() -> None:
    # Room for two: h is used three times, x once; y's load evicts x, not h.
    sizes = dict.fromkeys("hxy", 1)
    result = trace_mod.simulate_gdsf(list("hhhxyh"), sizes=sizes, capacity_bytes=2)
    assert (result.hits, result.loads, result.evictions) == (3, 3, 1)
    assert _simulate("hhhxyh", sizes, 2) == (2, 4, 2)


def test_gdsf_simulation_never_caches_a_model_bigger_than_the_capacity() -> None:
    result = trace_mod.simulate_gdsf(list("aba"), sizes={"a": 1, "b": 5}, capacity_bytes=2)
    assert (result.hits, result.loads, result.too_large) == (1, 1, 1)


def test_zipf_weights_are_normalised_power_law() -> None:
    weights = trace_mod.zipf_weights(1000, 1.1)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[0] / weights[1] == pytest.approx(2**1.1)
    assert weights[9] / weights[99] == pytest.approx(10**1.1)
    with pytest.raises(ValueError):
        trace_mod.zipf_weights(0, 1.1)


def test_trace_is_fixed_by_its_seed() -> None:
    first = trace_mod.make_trace(models=1000, requests=5000, exponent=1.1, seed=7)
    again = trace_mod.make_trace(models=1000, requests=5000, exponent=1.1, seed=7)
    other = trace_mod.make_trace(models=1000, requests=5000, exponent=1.1, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (5000,)
    assert first.min() >= 0 and first.max() < 1000


def test_trace_popularity_follows_zipf_over_shuffled_models() -> None:
    trace = trace_mod.make_trace(models=1000, requests=20_000, exponent=1.1, seed=0)
    counts = Counter(trace.tolist()).most_common()
    weights = trace_mod.zipf_weights(1000, 1.1)
    # The top model's share is rank 1's weight (about 0.13), within sampling noise.
    assert counts[0][1] / 20_000 == pytest.approx(weights[0], abs=0.01)
    assert counts[1][1] / 20_000 == pytest.approx(weights[1], abs=0.01)
    # The ranks land on shuffled ids, not on 0, 1, 2...
    assert [model for model, _ in counts[:3]] != [0, 1, 2]


# --- Prometheus text ----------------------------------------------------------------

_EXPOSITION = """\
# HELP modelmesh_cache_miss_milliseconds Cache miss delay
# TYPE modelmesh_cache_miss_milliseconds histogram
modelmesh_cache_miss_milliseconds_bucket{le="1.0"} 2.0
modelmesh_cache_miss_milliseconds_bucket{le="+Inf"} 7.0
modelmesh_cache_miss_milliseconds_count 7.0
modelmesh_cache_miss_milliseconds_sum 123.5
# TYPE modelmesh_loadmodel_milliseconds histogram
modelmesh_loadmodel_milliseconds_count{modelId="m1"} 4
modelmesh_loadmodel_milliseconds_count{modelId="m\\"2\\"",other="x,y}"} 5 1700000000000
modelmesh_age_at_eviction_milliseconds_count{} 3
modelmesh_api_request_milliseconds_count{method="ModelInfer",code="OK",} 100
modelmesh_instance_used_bps NaN
modelmesh_loadmodel_failure 1

"""


def test_exposition_samples_keep_labels_and_unescape_them() -> None:
    samples = metrics_mod.parse_exposition(_EXPOSITION)
    assert len(samples) == 10
    escaped = samples[5]
    assert escaped.name == "modelmesh_loadmodel_milliseconds_count"
    assert escaped.labels == (("modelId", 'm"2"'), ("other", "x,y}"))
    assert escaped.value == 5.0
    assert samples[1].labels == (("le", "+Inf"),)
    assert samples[6].labels == ()
    assert samples[7].labels == (("method", "ModelInfer"), ("code", "OK"))
    assert math.isnan(samples[8].value)


def test_totals_sum_over_label_sets() -> None:
    summed = metrics_mod.totals(metrics_mod.parse_exposition(_EXPOSITION))
    assert summed[metrics_mod.CACHE_MISS] == 7.0
    assert summed[metrics_mod.LOADS] == 9.0
    assert summed[metrics_mod.EVICTIONS] == 3.0
    counters = metrics_mod.CacheCounters.from_totals(summed)
    assert counters == metrics_mod.CacheCounters(misses=7.0, loads=9.0, evictions=3.0)
    assert metrics_mod.missing_counters(summed) == []
    assert metrics_mod.missing_counters({metrics_mod.LOADS: 1.0}) == [
        metrics_mod.CACHE_MISS,
        metrics_mod.EVICTIONS,
    ]


def test_counters_subtract_and_add() -> None:
    before = metrics_mod.CacheCounters(misses=1, loads=2, evictions=0)
    after = metrics_mod.CacheCounters(misses=11, loads=12, evictions=5)
    assert after - before == metrics_mod.CacheCounters(misses=10, loads=10, evictions=5)
    assert before + before == metrics_mod.CacheCounters(misses=2, loads=4, evictions=0)


@pytest.mark.parametrize(
    "line",
    ["modelmesh_x{le=1} 2", "modelmesh_x", "modelmesh_x 1 2 3", "{} 1", "modelmesh_x one"],
)
def test_a_malformed_sample_line_is_an_error(line: str) -> None:
    with pytest.raises(ValueError, match="line 2"):
        metrics_mod.parse_exposition(f"# HELP modelmesh_x x\n{line}\n")


# --- endpoints.json ------------------------------------------------------------------


def test_endpoints_of_a_one_instance_up() -> None:
    parsed = cluster_mod.parse_endpoints(
        {
            "grpc": "127.0.0.1:8033",
            "rest": "http://127.0.0.1:8008",
            "pid": 10,
            "instances": [{"id": "host-10", "grpc": "127.0.0.1:8033", "rest": None}],
        }
    )
    assert parsed.grpc == "127.0.0.1:8033"
    assert [(i.id, i.grpc, i.metrics) for i in parsed.instances] == [
        ("host-10", "127.0.0.1:8033", None)
    ]


def test_endpoints_of_a_mesh() -> None:
    instances = [
        {
            "id": f"i{n}",
            "grpc": f"127.0.0.1:{9000 + n}",
            "metrics": f"http://127.0.0.1:{9100 + n}/metrics",
            "pid": 100 + n,
        }
        for n in range(3)
    ]
    parsed = cluster_mod.parse_endpoints(
        {"grpc": "127.0.0.1:8033", "rest": None, "pid": 1, "instances": instances}
    )
    assert [i.grpc for i in parsed.instances] == [
        "127.0.0.1:9000",
        "127.0.0.1:9001",
        "127.0.0.1:9002",
    ]
    assert parsed.instances[2].metrics == "http://127.0.0.1:9102/metrics"
    assert parsed.instances[1].pid == 101


def test_endpoints_without_an_address_are_refused() -> None:
    with pytest.raises(ValueError):
        cluster_mod.parse_endpoints({"instances": []})
    with pytest.raises(ValueError):
        cluster_mod.parse_endpoints({"grpc": "127.0.0.1:1", "instances": ["x"]})


# --- counting and capacity -------------------------------------------------------------


def _totals(misses: float, loads: float, evictions: float) -> dict[str, float]:
    return {
        metrics_mod.CACHE_MISS: misses,
        metrics_mod.LOADS: loads,
        metrics_mod.EVICTIONS: evictions,
        "modelmesh_loadmodel_failure": 0.0,
        "modelmesh_instance_capacity_bytes": 1000.0,
    }


def test_counts_from_metrics_sum_the_instances_changes() -> None:
    before = mesh.Snapshot(metrics=[_totals(1, 1, 0), _totals(0, 0, 0)], admin=[(1, 0), (0, 0)])
    after = mesh.Snapshot(
        metrics=[_totals(31, 30, 20), _totals(10, 9, 4)], admin=[(30, 20), (9, 4)]
    )
    counts = mesh.count_between(before, after)
    assert counts.source == "metrics"
    assert (counts.misses, counts.loads, counts.evictions) == (40, 38, 24)
    assert (counts.admin_loads, counts.admin_evictions) == (38, 24)
    assert counts.metric_deltas[metrics_mod.CACHE_MISS] == 40
    assert counts.metric_deltas["modelmesh_loadmodel_failure"] == 0
    # Gauges are not differences of anything.
    assert "modelmesh_instance_capacity_bytes" not in counts.metric_deltas


def test_counts_without_metrics_take_misses_as_loads() -> None:
    before = mesh.Snapshot(metrics=[None], admin=[(5, 1)])
    after = mesh.Snapshot(metrics=[None], admin=[(25, 11)])
    counts = mesh.count_between(before, after)
    assert counts.source == "admin"
    assert (counts.misses, counts.loads, counts.evictions) == (20, 20, 10)
    assert counts.notes


def test_summary_hit_ratio_is_one_minus_misses_per_request() -> None:
    latencies = np.array([1.0, 2.0, 3.0, 4.0])
    result = load_mod.TraceResult(latencies_ms=latencies, elapsed_s=2.0, sent=4)
    counts = mesh.Counts(source="metrics", misses=1, loads=1, evictions=0)
    summary = mesh.summarise(
        result=result, counts=counts, simulated_hit_ratio=0.8, server_cpu_s=0.4
    )
    assert summary["hit_ratio"] == pytest.approx(0.75)
    assert summary["hit_gap"] == pytest.approx(0.05)
    assert summary["throughput_rps"] == pytest.approx(2.0)
    assert summary["p50_ms"] == pytest.approx(2.5)
    assert summary["errors"] == 0 and summary["requests"] == 4


def _policy_report(policy: str, hit: float | None) -> dict[str, object]:
    return {
        "eviction_policy": policy,
        "hit_ratio": hit,
        "lru_sim": {"hit_ratio": 0.60},
        "gdsf_sim": {"hit_ratio": 0.70},
        "opt_sim": {"hit_ratio": 0.80},
    }


@pytest.mark.parametrize(
    ("policy", "hit", "met"),
    [
        ("gdsf", 0.66, True),  # beats the LRU simulation by 0.06
        ("gdsf", 0.64, False),  # by 0.04 only
        ("lru", 0.56, True),  # within 0.05 of it
        ("lru", 0.54, False),
        ("gdsf", None, None),  # nothing served
    ],
)
def test_the_goal_depends_on_the_policy(policy: str, hit: float | None, met: bool | None) -> None:
    figures = mesh.policy_figures(_policy_report(policy, hit))
    assert figures["policy_goal_met"] is met
    assert figures["gdsf_sim_hit_ratio"] == 0.70 and figures["opt_sim_hit_ratio"] == 0.80
    if hit is not None:
        assert figures["gain_over_lru_sim"] == pytest.approx(hit - 0.60)


def test_summary_has_no_hit_ratio_when_nothing_was_served() -> None:
    result = load_mod.TraceResult(latencies_ms=np.full(3, np.nan), elapsed_s=1.0, sent=3)
    result.errors["UNAVAILABLE"] = 3
    counts = mesh.Counts(source="admin", misses=0, loads=0, evictions=0)
    summary = mesh.summarise(
        result=result, counts=counts, simulated_hit_ratio=0.5, server_cpu_s=0.0
    )
    assert summary["hit_ratio"] is None and summary["hit_gap"] is None
    assert summary["errors"] == 3 and summary["p99_ms"] is None


def test_capacity_makes_the_models_ratio_times_the_mesh() -> None:
    sizes = [100] * 900 + [300] * 100
    capacity = mesh.plan_capacity(model_sizes=sizes, instances=3, capacity_ratio=10)
    assert capacity == 4000
    assert sum(sizes) == pytest.approx(10 * 3 * capacity)


def test_capacity_refuses_to_fit_fewer_than_three_of_the_largest_model() -> None:
    with pytest.raises(ValueError, match="raise --models"):
        mesh.plan_capacity(model_sizes=[100] * 29 + [1000], instances=3, capacity_ratio=10)


# --- request bodies ---------------------------------------------------------------------


def test_infer_body_is_one_fp64_row_asking_for_predict() -> None:
    body = api_mod.infer_body(model_id="m0007", input_name="input-0", row=(1.0, 2.5))
    request = v2.ModelInferRequest.FromString(body)
    assert request.model_name == "m0007"
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("input-0", "FP64", [1, 2])
    ]
    assert [o.name for o in request.outputs] == ["predict"]
    np.testing.assert_array_equal(
        np.frombuffer(request.raw_input_contents[0], dtype="<f8"), [1.0, 2.5]
    )


def test_decode_label_reads_raw_and_typed_contents() -> None:
    raw = v2.ModelInferResponse(model_name="m")
    raw.outputs.add(name="predict_proba", datatype="FP64", shape=[1, 2])
    raw.outputs.add(name="predict", datatype="INT32", shape=[1])
    raw.raw_output_contents.append(np.asarray([0.2, 0.8], dtype="<f8").tobytes())
    raw.raw_output_contents.append(np.asarray([2], dtype="<i4").tobytes())
    assert api_mod.decode_label(raw.SerializeToString()) == 2

    typed = v2.ModelInferResponse(model_name="m")
    typed.outputs.add(name="predict", datatype="INT64", shape=[1]).contents.int64_contents.append(1)
    assert api_mod.decode_label(typed.SerializeToString()) == 1

    with pytest.raises(ValueError, match="no predict output"):
        api_mod.decode_label(v2.ModelInferResponse(model_name="m").SerializeToString())


def test_count_checks_flag_a_wrong_capacity_and_double_counted_requests() -> None:
    after = mesh.Snapshot(
        metrics=[{"modelmesh_instance_capacity_bytes": 4000.0}, None], admin=[(0, 0), (0, 0)]
    )
    counts = mesh.Counts(
        source="metrics",
        misses=12,
        loads=5,
        evictions=0,
        metric_deltas={"modelmesh_api_request_milliseconds_count": 20.0},
    )
    notes = mesh.check_counts(counts, after=after, capacity_bytes=5000, sent=10)
    assert len(notes) == 3
    assert "capacity of 4000 bytes" in notes[0]
    assert "20 external requests for 10 sent" in notes[1]
    assert "12 misses for 10 requests" in notes[2]

    fine = mesh.Counts(
        source="metrics",
        misses=3,
        loads=3,
        evictions=0,
        metric_deltas={"modelmesh_api_request_milliseconds_count": 10.0},
    )
    assert mesh.check_counts(fine, after=after, capacity_bytes=4000, sent=10) == []


# --- the load driver, against in-process fake instances -------------------------------


class _FakeInstance:
    """A v2 ModelInfer endpoint that answers label 1 for every model but
    ``wrong`` (label 0) and ``down`` (UNAVAILABLE); it records what it got."""

    def __init__(self, tracker: dict[str, int]) -> None:
        self.seen: list[str] = []
        self._tracker = tracker

    async def infer(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        request = v2.ModelInferRequest.FromString(body)
        self.seen.append(request.model_name)
        self._tracker["inflight"] += 1
        self._tracker["peak"] = max(self._tracker["peak"], self._tracker["inflight"])
        try:
            await asyncio.sleep(0.002)
        finally:
            self._tracker["inflight"] -= 1
        if request.model_name == "down":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no copy")
        response = v2.ModelInferResponse(model_name=request.model_name)
        response.outputs.add(name="predict", datatype="INT64", shape=[1])
        label = 0 if request.model_name == "wrong" else 1
        response.raw_output_contents.append(np.asarray([label], dtype="<i8").tobytes())
        reply: bytes = response.SerializeToString()
        return reply


async def _serve(instance: _FakeInstance) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {
            "ModelInfer": grpc.unary_unary_rpc_method_handler(
                instance.infer, request_deserializer=None, response_serializer=None
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_trace_goes_round_robin_with_bounded_concurrency_and_counts_failures() -> None:
    tracker = {"inflight": 0, "peak": 0}
    fakes = [_FakeInstance(tracker), _FakeInstance(tracker)]
    servers = [await _serve(fake) for fake in fakes]
    try:
        trace = ["a", "b", "wrong", "c", "down", "a"] * 10
        models = sorted(set(trace))
        spec = load_mod.TraceSpec(
            addresses=tuple(address for _, address in servers),
            trace=trace,
            bodies={
                m: api_mod.infer_body(model_id=m, input_name="input-0", row=(1.0,)) for m in models
            },
            expected=dict.fromkeys(models, 1),
            concurrency=3,
            time_limit_s=30.0,
            request_timeout_s=10.0,
        )
        result = await load_mod.run_trace(spec)
    finally:
        for server, _ in servers:
            await server.stop(None)
    assert result.sent == 60
    assert sorted(fakes[0].seen) == sorted(trace[0::2])
    assert sorted(fakes[1].seen) == sorted(trace[1::2])
    assert tracker["peak"] == 3
    assert result.errors == Counter({"WRONG_ANSWER": 10, "UNAVAILABLE": 10})
    assert result.completed == 40
    failed = [i for i, name in enumerate(trace) if name in ("wrong", "down")]
    assert np.isnan(result.latencies_ms[failed]).all()
    assert len(result.error_examples) == 5


async def test_trace_stops_starting_requests_at_the_time_limit() -> None:
    tracker = {"inflight": 0, "peak": 0}
    fake = _FakeInstance(tracker)
    server, address = await _serve(fake)
    try:
        spec = load_mod.TraceSpec(
            addresses=(address,),
            trace=["a"] * 100_000,
            bodies={"a": api_mod.infer_body(model_id="a", input_name="input-0", row=(1.0,))},
            expected={"a": 1},
            concurrency=2,
            time_limit_s=0.2,
            request_timeout_s=10.0,
        )
        result = await load_mod.run_trace(spec)
    finally:
        await server.stop(None)
    assert 0 < result.sent < 100_000
    assert result.completed == result.sent and result.error_count == 0


def test_scrape_reads_totals_over_http() -> None:
    body = _EXPOSITION.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        summed = metrics_mod.scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert summed[metrics_mod.LOADS] == 9.0
    assert summed["modelmesh_api_request_milliseconds_count"] == 100.0
