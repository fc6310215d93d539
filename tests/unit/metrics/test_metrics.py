"""meshserve.metrics: ModelMesh's metric names, units, labels and buckets,
read back through the exposition text as a scraper would."""

from __future__ import annotations

import enum
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from meshserve.metrics import (
    Metrics,
    MetricsRecorder,
    NullMetrics,
    used_basis_points,
)

INVOKE = "inference.GRPCInferenceService/ModelInfer"

# Every name ModelMesh's Prometheus exporter registers (Metric.java), with
# its type as the exposition declares it.
MODELMESH_METRICS = {
    "modelmesh_invoke_model_milliseconds": "histogram",
    "modelmesh_api_request_milliseconds": "histogram",
    "modelmesh_request_size_bytes": "histogram",
    "modelmesh_response_size_bytes": "histogram",
    "modelmesh_cache_miss_milliseconds": "histogram",
    "modelmesh_loadmodel_milliseconds": "histogram",
    "modelmesh_loadmodel_failure": "unknown",
    "modelmesh_unloadmodel_milliseconds": "histogram",
    "modelmesh_unloadmodel_failure": "unknown",
    "modelmesh_unloadmodel_attempt_failure": "unknown",
    "modelmesh_req_queue_delay_milliseconds": "histogram",
    "modelmesh_loading_queue_delay_milliseconds": "histogram",
    "modelmesh_model_sizing_milliseconds": "histogram",
    "modelmesh_age_at_eviction_milliseconds": "histogram",
    "modelmesh_loaded_model_size_bytes": "histogram",
    "modelmesh_instance_lru_seconds": "gauge",
    "modelmesh_instance_lru_age_seconds": "gauge",
    "modelmesh_instance_capacity_bytes": "gauge",
    "modelmesh_instance_used_bytes": "gauge",
    "modelmesh_instance_used_bps": "gauge",
    "modelmesh_instance_models_total": "gauge",
}
CLUSTER_METRICS = {
    "modelmesh_models_loaded_total",
    "modelmesh_models_managed_total",
    "modelmesh_models_with_failure_total",
}


def scrape(metrics: Metrics) -> dict[str, list[Sample]]:
    """Family name -> samples, parsed from the exposition text."""
    text = metrics.render().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def types(metrics: Metrics) -> dict[str, str]:
    text = metrics.render().decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def value(metrics: Metrics, sample_name: str, labels: dict[str, str] | None = None) -> float | None:
    """The sample's value, or None when it is not exported."""
    for samples in scrape(metrics).values():
        for sample in samples:
            if sample.name == sample_name and sample.labels == (labels or {}):
                return sample.value
    return None


def bucket_bounds(metrics: Metrics, family: str) -> list[float]:
    return [
        float(s.labels["le"])
        for s in scrape(metrics)[family]
        if s.name == f"{family}_bucket" and s.labels["le"] != "+Inf"
    ]


# ------------------------------------------------------------------ names


MESHSERVE_METRICS = {
    "meshserve_model_pull_milliseconds": "histogram",
    "meshserve_model_pull_bytes": "histogram",
    "meshserve_batch_size": "histogram",
    "meshserve_auth_denied": "counter",
    "meshserve_limit_rejected": "counter",
    "meshserve_payloads_dropped": "counter",
}


def test_exports_modelmesh_names_and_types() -> None:
    assert types(Metrics()) == MODELMESH_METRICS | MESHSERVE_METRICS


def test_batch_sizes_are_observed() -> None:
    metrics = Metrics()
    for size in (1, 3, 3):
        metrics.observe_batch(size, model_id="m")
    assert value(metrics, "meshserve_batch_size_count") == 3
    assert value(metrics, "meshserve_batch_size_sum") == 7
    assert bucket_bounds(metrics, "meshserve_batch_size")[:3] == [1.0, 2.0, 4.0]


def test_auth_denials_are_counted_by_kind_and_method() -> None:
    metrics = Metrics()
    metrics.auth_denied("unauthenticated", "ModelInfer")
    metrics.auth_denied("forbidden", "ModelInfer")
    metrics.auth_denied("forbidden", "ModelInfer")
    text = metrics.render().decode()
    assert 'meshserve_auth_denied_total{kind="forbidden",method="ModelInfer"} 2.0' in text


def test_pulls_are_measured() -> None:
    metrics = Metrics()
    metrics.observe_pull(120.0, size_bytes=16 * 2**20)
    text = metrics.render().decode()
    assert "meshserve_model_pull_milliseconds_count 1.0" in text
    assert "meshserve_model_pull_bytes_sum 1.6777216e+07" in text


def test_registries_are_separate() -> None:
    first, second = Metrics(), Metrics()
    first.load_failed()
    assert value(first, "modelmesh_loadmodel_failure") == 1
    assert value(second, "modelmesh_loadmodel_failure") == 0


def test_no_created_series() -> None:
    metrics = Metrics()
    metrics.observe_api_request(1, method=INVOKE, code="OK")
    assert b"_created" not in metrics.render()


def test_counters_keep_modelmesh_sample_names() -> None:
    # ModelMesh (simpleclient 0.9) exports e.g. `modelmesh_loadmodel_failure 3.0`.
    lines = Metrics().render().decode().splitlines()
    for name in (
        "modelmesh_loadmodel_failure",
        "modelmesh_unloadmodel_failure",
        "modelmesh_unloadmodel_attempt_failure",
    ):
        assert f"{name} 0.0" in lines
        assert not any(line.startswith(f"{name}_total") for line in lines)


# ------------------------------------------------------------------ request metrics


RequestObserver = Callable[[Metrics], None]


@pytest.mark.parametrize(
    ("family", "observe", "observed"),
    [
        (
            "modelmesh_api_request_milliseconds",
            lambda m: m.observe_api_request(12.5, method=INVOKE, code="OK"),
            12.5,
        ),
        (
            "modelmesh_invoke_model_milliseconds",
            lambda m: m.observe_invoke(7, method=INVOKE, code="OK"),
            7,
        ),
        (
            "modelmesh_request_size_bytes",
            lambda m: m.observe_request_size(300, method=INVOKE, code="OK"),
            300,
        ),
        (
            "modelmesh_response_size_bytes",
            lambda m: m.observe_response_size(40, method=INVOKE, code="OK"),
            40,
        ),
    ],
)
def test_request_metrics_have_method_and_code(
    family: str, observe: RequestObserver, observed: float
) -> None:
    metrics = Metrics()
    observe(metrics)
    labels = {"method": "ModelInfer", "code": "OK"}
    assert value(metrics, f"{family}_count", labels) == 1
    assert value(metrics, f"{family}_sum", labels) == observed


def test_one_api_call_records_what_the_three_calls_do() -> None:
    one, three = Metrics(per_model=True), Metrics(per_model=True)
    one.observe_api_call(
        12.5, method=INVOKE, code="OK", model_id="m", request_bytes=300, response_bytes=40
    )
    three.observe_api_request(12.5, method=INVOKE, code="OK", model_id="m")
    three.observe_request_size(300, method=INVOKE, code="OK", model_id="m")
    three.observe_response_size(40, method=INVOKE, code="OK", model_id="m")
    assert one.render() == three.render()
    # A failed call: no response; a call without a body size: no request size.
    one.observe_api_call(1, method=INVOKE, code="UNAVAILABLE")
    labels = {"method": "ModelInfer", "code": "UNAVAILABLE", "modelId": "", "vModelId": ""}
    assert value(one, "modelmesh_api_request_milliseconds_count", labels) == 1
    assert value(one, "modelmesh_request_size_bytes_count", labels) is None
    assert value(one, "modelmesh_response_size_bytes_count", labels) is None


class _StatusCode(enum.Enum):
    # Stands in for grpc.StatusCode: an enum whose member names are the codes.
    NOT_FOUND = (5, "not found")


def test_status_enums_are_labelled_by_name() -> None:
    metrics = Metrics()
    metrics.observe_api_request(3, method="ModelMetadata", code=_StatusCode.NOT_FOUND)
    labels = {"method": "ModelMetadata", "code": "NOT_FOUND"}
    assert value(metrics, "modelmesh_api_request_milliseconds_count", labels) == 1


def test_codes_and_methods_are_separate_series() -> None:
    metrics = Metrics()
    metrics.observe_api_request(1, method=INVOKE, code="OK")
    metrics.observe_api_request(1, method=INVOKE, code="OK")
    metrics.observe_api_request(1, method=INVOKE, code="UNAVAILABLE")
    count = "modelmesh_api_request_milliseconds_count"
    assert value(metrics, count, {"method": "ModelInfer", "code": "OK"}) == 2
    assert value(metrics, count, {"method": "ModelInfer", "code": "UNAVAILABLE"}) == 1


def test_per_model_labels_are_off_by_default() -> None:
    metrics = Metrics()
    metrics.observe_api_request(1, method=INVOKE, code="OK", model_id="m1")
    metrics.observe_load(5, size_bytes=10, model_id="m1")
    assert "modelId" not in metrics.render().decode()


def test_per_model_labels_when_enabled() -> None:
    metrics = Metrics(per_model=True)
    assert metrics.per_model
    metrics.observe_api_request(1, method=INVOKE, code="OK", model_id="m1", vmodel_id="v1")
    metrics.observe_invoke(1, method=INVOKE, code="OK", model_id="m1")
    metrics.observe_load(5, size_bytes=10, model_id="m1")
    metrics.observe_cache_miss(5, model_id="m2")
    request = {"method": "ModelInfer", "code": "OK", "modelId": "m1", "vModelId": "v1"}
    assert value(metrics, "modelmesh_api_request_milliseconds_count", request) == 1
    # Named by model id: vModelId is there, empty (ModelMesh's label set).
    invoke = {**request, "vModelId": ""}
    assert value(metrics, "modelmesh_invoke_model_milliseconds_count", invoke) == 1
    model_only = {"modelId": "m1", "vModelId": ""}
    assert value(metrics, "modelmesh_loadmodel_milliseconds_count", model_only) == 1
    assert value(metrics, "modelmesh_loaded_model_size_bytes_sum", model_only) == 10
    cache_miss = {"modelId": "m2", "vModelId": ""}
    assert value(metrics, "modelmesh_cache_miss_milliseconds_count", cache_miss) == 1
    # Counters and gauges never carry per-model labels.
    assert value(metrics, "modelmesh_loadmodel_failure") == 0


# ------------------------------------------------------------------ model events


@pytest.mark.parametrize(
    ("family", "observe"),
    [
        ("modelmesh_cache_miss_milliseconds", lambda m: m.observe_cache_miss(250)),
        ("modelmesh_loadmodel_milliseconds", lambda m: m.observe_load(250, size_bytes=1)),
        ("modelmesh_unloadmodel_milliseconds", lambda m: m.observe_unload(250)),
        ("modelmesh_model_sizing_milliseconds", lambda m: m.observe_sizing(250)),
        (
            "modelmesh_loading_queue_delay_milliseconds",
            lambda m: m.observe_loading_queue_delay(250),
        ),
        ("modelmesh_req_queue_delay_milliseconds", lambda m: m.observe_req_queue_delay(250)),
    ],
)
def test_timings_move_their_histogram(family: str, observe: RequestObserver) -> None:
    metrics = Metrics()
    assert value(metrics, f"{family}_count") == 0
    observe(metrics)
    assert value(metrics, f"{family}_count") == 1
    assert value(metrics, f"{family}_sum") == 250
    assert value(metrics, f"{family}_bucket", {"le": "200.0"}) == 0
    assert value(metrics, f"{family}_bucket", {"le": "500.0"}) == 1


def test_eviction_records_the_age() -> None:
    metrics = Metrics()
    metrics.observe_eviction(10 * 60_000)
    family = "modelmesh_age_at_eviction_milliseconds"
    assert value(metrics, f"{family}_count") == 1
    assert value(metrics, f"{family}_sum") == 600_000
    assert value(metrics, f"{family}_bucket", {"le": "300000.0"}) == 0
    assert value(metrics, f"{family}_bucket", {"le": "900000.0"}) == 1


def test_load_records_the_model_size() -> None:
    metrics = Metrics()
    metrics.observe_load(900, size_bytes=3 * 1024 * 1024)
    assert value(metrics, "modelmesh_loaded_model_size_bytes_count") == 1
    assert value(metrics, "modelmesh_loaded_model_size_bytes_sum") == 3 * 1024 * 1024
    assert value(metrics, "modelmesh_loaded_model_size_bytes_bucket", {"le": "4.194304e+06"}) == 1
    assert value(metrics, "modelmesh_loaded_model_size_bytes_bucket", {"le": "1.048576e+06"}) == 0


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("modelmesh_loadmodel_failure", lambda m: m.load_failed()),
        ("modelmesh_unloadmodel_failure", lambda m: m.unload_failed()),
        ("modelmesh_unloadmodel_attempt_failure", lambda m: m.unload_attempt_failed()),
    ],
)
def test_failures_are_counted(name: str, count: RequestObserver) -> None:
    metrics = Metrics()
    count(metrics)
    count(metrics)
    assert value(metrics, name) == 2


def test_buckets_are_modelmesh_buckets() -> None:
    metrics = Metrics()
    # Labelled histograms export buckets once a series exists.
    metrics.observe_api_request(1, method=INVOKE, code="OK")
    metrics.observe_request_size(1, method=INVOKE, code="OK")
    assert bucket_bounds(metrics, "modelmesh_api_request_milliseconds") == [
        0.5, 1, 2, 5, 10, 20, 50, 75, 100, 200, 500, 1000, 2000,
        5000, 10000, 20000, 60000, 120000, 300000,
    ]  # fmt: skip
    day = 24 * 3600 * 1000
    assert bucket_bounds(metrics, "modelmesh_age_at_eviction_milliseconds") == [
        30_000, 300_000, 900_000, 3_600_000, 4 * 3_600_000, 12 * 3_600_000,
        day, 7 * day, 30 * day, 90 * day,
    ]  # fmt: skip
    assert bucket_bounds(metrics, "modelmesh_loaded_model_size_bytes") == [
        256 * 1024 * 4**i for i in range(8)
    ]
    assert bucket_bounds(metrics, "modelmesh_request_size_bytes") == [128 * 4**i for i in range(8)]


# ------------------------------------------------------------------ gauges


def test_instance_gauges() -> None:
    metrics = Metrics()
    metrics.set_instance(
        capacity_bytes=1_000_000,
        used_bytes=250_000,
        model_copies=3,
        lru_last_used_ms=1_700_000_000_000,
        now_ms=1_700_000_090_500,
    )
    assert value(metrics, "modelmesh_instance_capacity_bytes") == 1_000_000
    assert value(metrics, "modelmesh_instance_used_bytes") == 250_000
    assert value(metrics, "modelmesh_instance_used_bps") == 2_500  # 25% in basis points
    assert value(metrics, "modelmesh_instance_models_total") == 3
    assert value(metrics, "modelmesh_instance_lru_seconds") == 1_700_000_000
    assert value(metrics, "modelmesh_instance_lru_age_seconds") == 90


def test_empty_instance_reports_no_lru_as_modelmesh_does() -> None:
    metrics = Metrics()
    metrics.set_instance(
        capacity_bytes=0, used_bytes=0, model_copies=0, lru_last_used_ms=None, now_ms=5_000
    )
    assert value(metrics, "modelmesh_instance_used_bps") == 0
    assert value(metrics, "modelmesh_instance_lru_age_seconds") == 0
    # Long.MAX_VALUE ms in seconds: "never", so min() over pods skips it.
    assert value(metrics, "modelmesh_instance_lru_seconds") == float((2**63 - 1) // 1000)


@pytest.mark.parametrize(
    ("used", "capacity", "bps"),
    [(0, 100, 0), (1, 3, 3333), (100, 100, 10_000), (5, 0, 0), (1, 20_000, 0)],
)
def test_used_basis_points(used: int, capacity: int, bps: int) -> None:
    assert used_basis_points(used, capacity) == bps


def test_cluster_gauges_only_while_set() -> None:
    metrics = Metrics()
    assert CLUSTER_METRICS.isdisjoint(types(metrics))
    metrics.set_cluster(models_loaded=4, models_managed=10, models_with_failure=1)
    metrics.set_cluster(models_loaded=5, models_managed=11, models_with_failure=2)
    assert value(metrics, "modelmesh_models_loaded_total") == 5
    assert value(metrics, "modelmesh_models_managed_total") == 11
    assert value(metrics, "modelmesh_models_with_failure_total") == 2
    assert {name: t for name, t in types(metrics).items() if name in CLUSTER_METRICS} == {
        name: "gauge" for name in CLUSTER_METRICS
    }
    metrics.clear_cluster()
    metrics.clear_cluster()
    assert CLUSTER_METRICS.isdisjoint(types(metrics))
    metrics.set_cluster(models_loaded=1, models_managed=1, models_with_failure=0)
    assert value(metrics, "modelmesh_models_loaded_total") == 1


# ------------------------------------------------------------------ the null recorder


def _exercise(recorder: MetricsRecorder) -> None:
    recorder.observe_invoke(1, method=INVOKE, code="OK", model_id="m")
    recorder.observe_api_request(1, method=INVOKE, code="OK")
    recorder.observe_request_size(1, method=INVOKE, code="OK")
    recorder.observe_response_size(1, method=INVOKE, code="OK")
    recorder.observe_cache_miss(1)
    recorder.observe_load(1, size_bytes=1)
    recorder.load_failed()
    recorder.observe_unload(1)
    recorder.unload_failed()
    recorder.unload_attempt_failed()
    recorder.observe_eviction(1)
    recorder.observe_sizing(1)
    recorder.observe_loading_queue_delay(1)
    recorder.observe_req_queue_delay(1)
    recorder.limit_rejected("rate")
    recorder.set_instance(
        capacity_bytes=10, used_bytes=5, model_copies=1, lru_last_used_ms=1, now_ms=2
    )
    recorder.set_cluster(models_loaded=1, models_managed=1, models_with_failure=0)
    recorder.clear_cluster()


def test_null_metrics_accept_everything_and_render_nothing() -> None:
    null = NullMetrics()
    _exercise(null)
    assert null.render() == b""


def test_both_implementations_share_the_interface() -> None:
    # mypy checks the signatures (both are passed as MetricsRecorder); this
    # checks that nothing the protocol names is missing at run time.
    real = Metrics()
    _exercise(real)
    assert value(real, "modelmesh_loadmodel_failure") == 1
    assert value(real, "meshserve_limit_rejected_total", {"limit": "rate"}) == 1
    invoke = {"method": "ModelInfer", "code": "OK"}
    assert value(real, "modelmesh_invoke_model_milliseconds_count", invoke) == 1
    for name in dir(MetricsRecorder):
        if not name.startswith("_"):
            assert callable(getattr(NullMetrics, name)), name
            assert callable(getattr(Metrics, name)), name
