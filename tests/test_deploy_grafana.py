"""deploy/grafana/uptax.json: a dashboard Grafana can import (valid JSON, a Prometheus
datasource input, a title and queries on every panel) over metrics a real gateway exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from monitoring_support import DEPLOY, metric_names, promtool, unknown_metrics

DASHBOARD = DEPLOY / "grafana" / "uptax.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> list[dict[str, Any]]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", ()))  # a collapsed row holds its panels
    return [panel for panel in found if panel["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    """(panel title, expression) for every query of every panel."""
    return [(panel["title"], target["expr"]) for panel in panels() for target in panel["targets"]]


def variable_queries() -> list[str]:
    return [variable["definition"] for variable in dashboard()["templating"]["list"]]


def test_it_is_an_importable_dashboard_with_a_prometheus_input() -> None:
    board = dashboard()
    assert board["title"] and board["uid"]
    assert 36 <= board["schemaVersion"] <= 41
    (source,) = board["__inputs"]
    assert source["name"] == "DS_PROMETHEUS"
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_each_panel_has_a_title_and_prometheus_queries() -> None:
    assert len(panels()) >= 10
    for panel in panels():
        assert panel["title"], panel
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
            assert target["datasource"] == DATASOURCE, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_dashboard_shows_what_operators_watch() -> None:
    text = " ".join(expr for _, expr in exprs())
    for needed in (
        "uptax_requests_total",  # requests per second by level, error rate
        "uptax_fallbacks_total",
        "histogram_quantile(0.99, sum by (le) (rate(uptax_request_duration_seconds_bucket",
        "uptax_provider_call_duration_seconds_bucket",
        "uptax_breaker_state",
        "uptax_provider_health",
        "uptax_cost_usd_total",
        "sum by (tenant)",
        "uptax_requests_in_flight",
    ):
        assert needed in text, needed


def test_every_metric_in_every_query_is_exposed_by_a_gateway() -> None:
    used = set()
    for title, expr in exprs():
        assert unknown_metrics(expr) == [], title
        used |= metric_names(expr)
    for query in variable_queries():
        (metric,) = re.findall(r"label_values\((\w+)", query)
        assert unknown_metrics(metric) == [], query
        used.add(metric)
    assert len(used) >= 12


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, Grafana's variables given values."""
    values = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".*", "$instance": ".*"}
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for index, (_, expr) in enumerate(exprs()):
        for variable, value in values.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        lines += [f"      - record: dashboard:query{index}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard.yml"
    rules.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
