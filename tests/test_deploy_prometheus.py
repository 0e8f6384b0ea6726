"""deploy/prometheus: the alert rules and the example config pass promtool's checks, the rules'
unit tests pass, and every metric the rules name is one a real gateway exposes.

The rule files are read with a few regular expressions over the YAML this project writes (one
key per line, block scalars for long expressions), not a YAML library: promtool has parsed them
for real by then, and each reader below checks it found what it looked for."""

from __future__ import annotations

import re
import subprocess

import attrs
import pytest
from monitoring_support import DEPLOY, exposed_labels, metric_names, promtool, unknown_metrics

PROMETHEUS = DEPLOY / "prometheus"

#: The design's four alerts, and the two that say what fallback hides.
ALERTS = {
    "ProviderOffline",
    "ProviderErrorRateHigh",
    "ProviderLatencyHigh",
    "ProviderQuotaLow",
    "BreakerOpen",
    "AllLevelsFailed",
}


@attrs.frozen
class Rule:
    alert: str
    expr: str
    severity: str
    annotations: dict[str, str]


def _value(block: str, key: str) -> str:
    """A key's value in `block`: on its line, or the block scalar (`|`, `>-`) indented under it."""
    match = re.search(rf"^(\s*){key}:[ ]*(.*)$", block, re.MULTILINE)
    assert match is not None, f"no {key} in {block!r}"
    indent, value = len(match.group(1)), match.group(2).strip()
    if value not in ("|", ">-", ">", "|-"):
        return value.strip('"')
    lines = []
    for line in block[match.end() + 1 :].splitlines():
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        lines.append(line.strip())
    return ("\n" if value.startswith("|") else " ").join(lines).strip()


def rules() -> list[Rule]:
    text = (PROMETHEUS / "alerts.yml").read_text(encoding="utf-8")
    blocks = re.split(r"^\s*- alert: ", text, flags=re.MULTILINE)[1:]
    found = []
    for block in blocks:
        name = block.split("\n", 1)[0].strip()
        annotations = block.split("annotations:", 1)[1]
        found.append(
            Rule(
                alert=name,
                expr=_value(block, "expr"),
                severity=_value(block, "severity"),
                annotations={key: _value(annotations, key) for key in ("summary", "description")},
            )
        )
    assert len(found) == text.count("alert:") and found
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def test_the_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = run_promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_example_config_passes_promtool_check() -> None:
    result = run_promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_there_with_severity_and_annotations() -> None:
    found = {rule.alert: rule for rule in rules()}
    assert set(found) == ALERTS
    for name, rule in found.items():
        assert rule.severity in {"warning", "critical"}, name
        assert rule.annotations["summary"] and rule.annotations["description"], name
    for name in ALERTS - {"AllLevelsFailed"}:
        assert "{{ $labels.provider }}" in found[name].annotations["summary"], name


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    text = (PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8")
    cases = re.findall(r"alertname: (\w+)\n\s*exp_alerts:(.*)", text)
    assert len(cases) == text.count("alertname:")
    firing = {name for name, rest in cases if rest.strip() != "[]"}
    silent = {name for name, rest in cases if rest.strip() == "[]"}
    assert firing == ALERTS and silent == ALERTS


def test_every_metric_in_the_rules_is_exposed_by_a_gateway() -> None:
    used = set()
    for rule in rules():
        assert unknown_metrics(rule.expr) == [], rule.alert
        used |= metric_names(rule.expr)
    assert len(used) >= 6  # the expressions were read: one metric or more per alert


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('sum by (job) (rate(uptax_x_total{a="b,}"}[5m])) > 0.1', {"uptax_x_total"}),
        ("a / on (p) group_left (q) b * 1e3 offset 5m", {"a", "b"}),
        ('max without (state) (m{state=~"open|half_open"}) == bool 1', {"m"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


def test_an_unknown_metric_or_label_is_reported() -> None:
    assert "uptax_requests_in_flight" in exposed_labels()
    assert unknown_metrics("rate(uptax_no_such_metric_total[5m])") == ["uptax_no_such_metric_total"]
    assert unknown_metrics('uptax_breaker_state{status="open"}') == ["uptax_breaker_state{status}"]
