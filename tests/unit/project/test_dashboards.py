"""deploy/grafana's dashboard and deploy/prometheus's alert rules, checked
offline: the JSON is a dashboard Grafana can import, the rule file has
Prometheus' shape (promtool's checks: groups with unique names, rules with
an alert name, a PromQL expression, a duration, labels and annotations),
and every query parses as PromQL with the official grammar. Whether the
metrics they read exist is checked against a live instance in
tests/integration/test_up_dashboards.py."""

from __future__ import annotations

import re
import subprocess

import promql_parser
import pytest

from meshserve.metrics._catalog import CATALOG
from tests._dashboards import RULES, RULES_TESTS, dashboard, parse, queries, rules
from tests._tools import require_tool

_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_TEMPLATE_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def test_the_dashboard_is_importable() -> None:
    data = dashboard()
    assert data["uid"] and data["title"] and data["schemaVersion"] >= 36
    panels = data["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {variable["name"] for variable in data["templating"]["list"]}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            used = {a or b for a, b in _TEMPLATE_VARIABLE.findall(target["expr"])}
            assert used <= variables | {"__rate_interval", "__interval"}, (panel["title"], used)


def test_the_dashboard_covers_what_operators_watch() -> None:
    """Request rate and latency per model, cache hits and misses, loads,
    evictions, capacity used and copies (issue 16)."""
    read = {s.name for q in queries() if q.where.startswith("panel") for s in q.selectors}
    for metric in (
        "modelmesh_api_request_milliseconds_count",
        "modelmesh_api_request_milliseconds_bucket",
        "modelmesh_cache_miss_milliseconds_count",
        "modelmesh_loadmodel_milliseconds_count",
        "modelmesh_loadmodel_failure",
        "modelmesh_age_at_eviction_milliseconds_count",
        "modelmesh_instance_used_bps",
        "modelmesh_instance_models_total",
    ):
        assert metric in read
    grouped = {label for q in queries() if q.where.startswith("panel") for label in q.grouping}
    assert "modelId" in grouped


def test_the_rule_file_has_prometheus_shape() -> None:
    groups = rules()["groups"]
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names))
    alerts: list[str] = []
    for group in groups:
        assert set(group) <= {"name", "interval", "limit", "rules"}
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["alert"])
            assert _DURATION.match(rule["for"]), rule["for"]
            promql_parser.parse_duration(rule["for"])
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert {"summary", "description"} <= set(rule["annotations"])
            alerts.append(rule["alert"])
    assert {
        "MeshserveInstanceDown",
        "MeshserveLoadFailuresRising",
        "MeshserveCacheThrashing",
        "MeshserveCapacityNearFull",
    } <= set(alerts)


def test_every_query_parses_and_reads_catalogued_metrics() -> None:
    catalogued = {spec.name for spec in CATALOG}
    for query in queries():
        for selector in query.selectors:
            base = re.sub(r"_(bucket|sum|count|total)$", "", selector.name)
            assert selector.name == "up" or base in catalogued or selector.name in catalogued, (
                query.where,
                selector.name,
            )


@pytest.mark.parametrize("expr", ["rate(x[5m]", "sum by (le (x)", "x{le=}"])
def test_a_broken_query_is_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="not PromQL"):
        parse("a test", expr)


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    """Prometheus' own checker, and the rules' unit tests
    (deploy/prometheus/meshserve-alerts.test.yaml): each alert fires on the
    series that should raise it and stays quiet on the others."""
    promtool = require_tool("promtool", package="prometheus")
    for command in ("check", "test"):
        path = RULES if command == "check" else RULES_TESTS
        done = subprocess.run(
            [promtool, command, "rules", str(path)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
