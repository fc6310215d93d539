"""deploy/grafana's dashboard and deploy/prometheus's alert rules against a
live scrape of a real `meshserve up`: every metric a panel or a rule reads
is exported (a histogram's _bucket/_sum/_count by its family), with the
labels the query filters and groups on, and the bucket bound a rule picks.

The instance runs with per-model labels and a capacity for one model, and
is made to serve, miss, load, evict and fail, so that the series the
queries read have samples."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from tests._dashboards import RULES, Query, Selector, parse, queries
from tests._processes import stop_process
from tests._tools import require_tool
from tests.integration._browser import artifacts_dir, chromium
from tests.integration._etcd import free_port
from tests.integration._mesh import make_model
from tests.integration._up import Registration, Up, run_up, wait_until

MODELS = tuple(f"m{i}" for i in range(40))
"""More copies than the capacity holds (see the live fixture)."""

# Labels Prometheus attaches at scrape time, not the instance.
_TARGET_LABELS = frozenset({"job", "instance"})
_SUFFIXES = {"_bucket": "histogram", "_count": "histogram", "_sum": "histogram"}


@dataclass(frozen=True, slots=True)
class Family:
    type: str
    labels: frozenset[str]
    """Every label on its samples (le included)."""
    bounds: frozenset[str]
    """Its histogram buckets' ``le`` values."""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real `meshserve up` that has served, missed, loaded, evicted and
    failed a load."""
    work = tmp_path_factory.mktemp("dashboards")
    model = make_model(work / "m.skops")
    corrupt = work / "corrupt.skops"
    corrupt.write_bytes(b"not a model")
    register = [
        *(Registration(name=name, type="sklearn", path=model) for name in MODELS),
        Registration(name="broken", type="sklearn", path=corrupt),
    ]
    # Room for the first load's prediction (a skops model is predicted at
    # 1.3 x its file + 256 KiB, ~270 KiB here) but not for every copy: a
    # copy is measured at 8 KiB or more, and later predictions are scaled
    # to what loads measured, so loading all of MODELS evicts.
    env = {
        "MESHSERVE_METRICS__PER_MODEL": "true",
        "MESHSERVE_RUNTIME__CAPACITY_BYTES": str(300 * 1024),
    }
    with run_up(work / "data", register=register, env=env) as up:
        endpoints = json.loads((up.data_dir / "endpoints.json").read_text())
        url: str = endpoints["instances"][0]["metrics"]
        client = up.http_client()
        try:
            for name in (*MODELS, "broken", "missing"):
                _infer(client, name)
        finally:
            client.close()
        # The cluster-wide gauges come with the leader's next report.
        wanted = (
            "modelmesh_age_at_eviction_milliseconds_bucket{",
            "\nmodelmesh_models_loaded_total ",
        )
        wait_until(
            lambda: all(sample in _get(url) for sample in wanted),
            timeout=90,
            what="an eviction and the leader's gauges",
            interval=0.5,
        )
        yield Live(up=up, metrics_url=url)


@dataclass(frozen=True, slots=True)
class Live:
    up: Up
    metrics_url: str


@pytest.fixture(scope="module")
def scrape(live: Live) -> dict[str, Family]:
    return _families(_get(live.metrics_url))


def _infer(client: triton_http.InferenceServerClient, name: str) -> None:
    tensor = triton_http.InferInput("input-0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    try:
        client.infer(name, [tensor])
    except InferenceServerException as exc:
        assert name in ("broken", "missing"), exc.message()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text: str = reply.read().decode()
    return text


def _families(text: str) -> dict[str, Family]:
    found = {}
    for family in text_string_to_metric_families(text):
        labels = frozenset(label for sample in family.samples for label in sample.labels)
        bounds = frozenset(
            sample.labels["le"] for sample in family.samples if sample.name.endswith("_bucket")
        )
        # A counter's family drops the _total its samples carry.
        name = family.name + ("_total" if family.type == "counter" else "")
        found[name] = Family(type=family.type, labels=labels, bounds=bounds)
    return found


def _family(scrape: dict[str, Family], selector: Selector) -> Family | None:
    for suffix, kind in _SUFFIXES.items():
        base = selector.name.removesuffix(suffix)
        if base != selector.name and base in scrape and scrape[base].type == kind:
            return scrape[base]
    family = scrape.get(selector.name)
    return family if family is not None and family.type != "histogram" else None


def _problems(query: Query, scrape: dict[str, Family]) -> Iterator[str]:
    seen: set[str] = set()
    for selector in query.selectors:
        if selector.name == "up":  # Prometheus' own, per scrape target
            continue
        family = _family(scrape, selector)
        if family is None:
            yield f"{selector.name} is not in the scrape"
            continue
        seen |= family.labels
        for label, op, value in selector.matchers:
            if label in _TARGET_LABELS:
                continue
            if label not in family.labels:
                yield f"{selector.name} has no label {label}"
            elif label == "le" and op == "MatchOp.Equal" and value not in family.bounds:
                yield f"{selector.name} has no bucket le={value!r} (has {sorted(family.bounds)})"
    for label in set(query.grouping) - seen - _TARGET_LABELS - {"le"}:
        yield f"groups by {label}, which none of its series has"


def test_every_query_reads_exported_series(scrape: dict[str, Family]) -> None:
    problems = [f"{q.where}: {p}" for q in queries() for p in _problems(q, scrape)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_wrong_name_label_or_bucket(scrape: dict[str, Family]) -> None:
    wrong = parse(
        "a test",
        'sum by (model) (rate(modelmesh_api_request_milliseconds_count{method="ModelInfer"}[5m]))'
        ' + sum(rate(modelmesh_age_at_eviction_milliseconds_bucket{le="300000"}[5m]))'
        " + modelmesh_instance_used_percent + modelmesh_instance_used_bytes_bucket",
    )
    assert sorted(_problems(wrong, scrape)) == [
        "groups by model, which none of its series has",
        "modelmesh_age_at_eviction_milliseconds_bucket has no bucket le='300000' "
        f"(has {sorted(scrape['modelmesh_age_at_eviction_milliseconds'].bounds)})",
        "modelmesh_instance_used_bytes_bucket is not in the scrape",
        "modelmesh_instance_used_percent is not in the scrape",
    ]


# -- in a real Prometheus ---------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus scraping the instance every second as the job
    ``meshserve``, with the alert rules loaded; its base URL."""
    binary = require_tool("prometheus", package="prometheus")
    work = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(live.metrics_url)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "meshserve",
                "metrics_path": target.path,
                "scheme": target.scheme,
                "static_configs": [{"targets": [target.netloc]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    with (work / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            # Two scrapes, so that rate() over them has something to say.
            wait_until(
                lambda: _api(base, 'count_over_time(up{job="meshserve"}[1m]) >= 3', proc),
                timeout=60,
                what="Prometheus scraping the instance",
                interval=0.5,
            )
            yield base
        finally:
            stop_process(proc)


def _api(base: str, query: str, proc: subprocess.Popen[bytes] | None = None) -> list[Any]:
    """The result of an instant query (empty while Prometheus is starting)."""
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"prometheus exited with {proc.returncode}")
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        answer = json.loads(exc.read())
        raise AssertionError(f"{query!r}: {answer.get('error')}") from None
    except OSError:
        return []
    result: list[Any] = answer["data"]["result"]
    return result


def test_prometheus_evaluates_every_query_and_rule(prometheus: str) -> None:
    """Every panel's and variable's query runs without error in a real
    Prometheus over the real scrape, most with data; every alert rule is
    evaluated healthy."""
    empty = []
    for query in queries():
        if query.where.startswith("rule"):
            continue
        if not _api(prometheus, query.text):
            empty.append(query.where)
    # Some panels have nothing to show on a quiet instance: no request
    # failed with a code but OK is fine, a pull needs a remote store.
    assert set(empty) <= {"panel 'Load time and loading queue (p95)' C"}, empty
    names = {rule["name"] for rule in _rules(prometheus)}
    assert names >= {"MeshserveInstanceDown", "MeshserveCacheThrashing"}
    wait_until(
        lambda: all(rule.get("lastEvaluation", "").startswith("20") for rule in _rules(prometheus)),
        timeout=30,
        what="every rule evaluated",
    )
    unhealthy = [(r["name"], r.get("lastError")) for r in _rules(prometheus) if r["health"] != "ok"]
    assert unhealthy == []


def _rules(base: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as reply:
        groups = json.loads(reply.read())["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


# The panels shown in docs/img/dashboard-panels.png, by title.
_SHOWN = (
    "Request rate per model",
    "Cache hits and misses",
    "Evictions",
    "Capacity used per instance",
)


def test_dashboard_panels_render_in_prometheus_graphs(live: Live, prometheus: str) -> None:
    """A screenshot of some panels' queries graphed by Prometheus' own
    page (Grafana is not packaged), after traffic that makes more models
    than fit take turns: misses, loads and evictions."""
    client = live.up.http_client()
    try:
        for turn in range(30):
            for _ in range(3):
                _infer(client, MODELS[(turn * 7) % len(MODELS)])
            time.sleep(0.5)  # spread over the graphs' minute
    finally:
        client.close()
    by_title = {q.where.split("'")[1]: q for q in queries() if q.where.startswith("panel")}
    params: dict[str, str] = {}
    for index, title in enumerate(_SHOWN):
        params |= {
            f"g{index}.expr": by_title[title].text,
            f"g{index}.tab": "0",
            f"g{index}.range_input": "1m",
            f"g{index}.stacked": "0",
        }
    with chromium(width=1100, height=900) as browser:
        page = browser.new_page()
        page.goto(f"{prometheus}/classic/graph?{urllib.parse.urlencode(params)}")
        page.wait_for_selector(".rickshaw_graph path", state="attached", timeout=60_000)
        page.wait_for_timeout(1000)  # the last graphs draw after the first
        page.add_style_tag(content="nav.navbar { display: none !important; }")
        page.screenshot(path=artifacts_dir() / "dashboard-panels.png", full_page=True)
