"""meshserve.metrics' catalog: each metric declared once, and the exporter
and the docs following it."""

from __future__ import annotations

import pathlib

import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshserve.metrics import Metrics
from meshserve.metrics._catalog import CATALOG, Kind, MetricSpec

DOCS = pathlib.Path(__file__).resolve().parents[3] / "docs" / "metrics.md"

_EXPOSED_TYPE = {
    Kind.HISTOGRAM: "histogram",
    Kind.COUNTER: "counter",
    Kind.PLAIN_COUNTER: "unknown",
    Kind.GAUGE: "gauge",
}


def test_names_are_unique() -> None:
    names = [spec.name for spec in CATALOG]
    assert len(names) == len(set(names))


def test_every_metric_is_documented() -> None:
    docs = DOCS.read_text()
    missing = [spec.name for spec in CATALOG if f"`{spec.name}" not in docs]
    assert not missing, f"docs/metrics.md does not describe {missing}"


def test_modelmesh_metrics_name_their_metric_java_constant() -> None:
    for spec in CATALOG:
        assert (spec.modelmesh is not None) == spec.name.startswith("modelmesh_"), spec.name
        assert spec.name.startswith(("modelmesh_", "meshserve_")), spec.name


def test_the_exporter_builds_every_metric_from_its_spec() -> None:
    metrics = Metrics()
    metrics.set_cluster(models_loaded=0, models_managed=0, models_with_failure=0)
    families = {
        family.name: family for family in text_string_to_metric_families(metrics.render().decode())
    }
    assert set(families) == {spec.name for spec in CATALOG}
    for spec in CATALOG:
        family = families[spec.name]
        assert family.type == _EXPOSED_TYPE[spec.kind], spec.name
        assert family.documentation == spec.help, spec.name


@pytest.mark.parametrize(
    ("kind", "labels", "buckets", "leader_only"),
    [
        (Kind.GAUGE, (), (1.0,), False),
        (Kind.HISTOGRAM, (), (), False),
        (Kind.PLAIN_COUNTER, ("code",), (), False),
        (Kind.COUNTER, (), (), True),
    ],
)
def test_inconsistent_specs_are_refused(
    kind: Kind, labels: tuple[str, ...], buckets: tuple[float, ...], leader_only: bool
) -> None:
    with pytest.raises(ValueError, match="x_metric"):
        MetricSpec(
            name="x_metric",
            kind=kind,
            help="h",
            labels=labels,
            buckets=buckets,
            leader_only=leader_only,
        )
