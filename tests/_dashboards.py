"""The queries of deploy/grafana's dashboard and deploy/prometheus's alert
rules, read as PromQL (with the official grammar, via promql-parser): for
the offline checks (tests/unit/project/test_dashboards.py) and the check
against a live scrape (tests/integration/test_up_dashboards.py)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser
import yaml

from tests._examples import ROOT

__all__ = [
    "DASHBOARD",
    "RULES",
    "RULES_TESTS",
    "Query",
    "Selector",
    "dashboard",
    "queries",
    "rules",
]

DASHBOARD = ROOT / "deploy" / "grafana" / "meshserve-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "meshserve-alerts.yaml"
RULES_TESTS = ROOT / "deploy" / "prometheus" / "meshserve-alerts.test.yaml"
""":data:`RULES`' unit tests, for ``promtool test rules``."""

# Grafana's variables, as a query sees them once Grafana fills them in.
_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$job": ".*", "$instance": ".*"}
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


@dataclass(frozen=True, slots=True)
class Selector:
    """A series selector in a query: the metric and its label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]
    """(label, op, value), op as promql-parser names it (MatchOp.Equal...)."""


@dataclass(frozen=True, slots=True)
class Query:
    where: str
    """Which panel or rule, for messages."""
    expr: str
    text: str
    """``expr`` with Grafana's variables filled in, as Prometheus gets it."""
    selectors: tuple[Selector, ...]
    grouping: tuple[str, ...]
    """Labels named by ``by (...)`` and ``on (...)``."""


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return data


def parse(where: str, expr: str) -> Query:
    """``expr`` parsed (Grafana's variables filled in); ValueError names
    ``where`` when it is not PromQL."""
    text = expr
    for variable, value in _VARIABLES.items():
        text = text.replace(variable, value)
    selectors: list[Selector] = []
    grouping: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = tuple((m.name, str(m.op), m.value) for m in node.matchers.matchers)
            selectors.append(Selector(name=node.name or "", matchers=matchers))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.extend(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            grouping.extend(matching.labels if matching is not None else ())

    try:
        promql_parser.walk(promql_parser.parse(text), visit)
    except ValueError as exc:
        raise ValueError(f"{where}: {expr!r} is not PromQL: {exc}") from None
    return Query(
        where=where, expr=expr, text=text, selectors=tuple(selectors), grouping=tuple(grouping)
    )


def _dashboard_exprs(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in data["panels"]:
        for target in panel.get("targets", ()):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in data["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["definition"])
            assert match, f"variable {variable['name']}: not label_values(...)"
            yield f"variable {variable['name']}", match["selector"]


def _rule_exprs(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for group in data["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]


def queries() -> list[Query]:
    """Every query of the dashboard and of the alert rules, parsed."""
    found = [*_dashboard_exprs(dashboard()), *_rule_exprs(rules())]
    return [parse(where, expr) for where, expr in found]
